"""Fine-tune a language model with MultiWorkerMirroredStrategy: two worker processes on this machine.

    python examples/multiworker_finetune.py --out runs/mw                  # shipped IMDb GPT-2 model
    python examples/multiworker_finetune.py --model tiny-gpt2 --tiny --out /tmp/mw

The launcher starts `--workers` copies of this script, each with its own
TF_CONFIG naming every worker on 127.0.0.1 (`tflm.distribute.local_tf_configs`).
Each worker runs the same `tflm.finetune.finetune` call with
strategy="multiworker": the batch size is global (split over the replicas),
every worker trains the same model in sync, and worker 0 (the chief) writes
results.json / results.md in --out. On several machines, start this script with
`--worker` on each, with TF_CONFIG listing their host:port addresses.
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = os.path.join(HERE, "..", "saved_models", "imdb-gpt2-small-xent")
TINY = {"max_train": 16, "max_eval": 8, "epochs": 1, "lrs": [1e-3], "batch_sizes": [4]}


def worker(out, model=DEFAULT_MODEL, task="sst2", lrs=(1e-4,), batch_sizes=(8,), epochs=1, max_train=None,
           max_eval=None, data_dir=None, seed=0):
    """One worker of the job (TF_CONFIG must be set): the fine-tuning grid's report."""
    from tflm.finetune import finetune

    return finetune(model, task, data_dir=data_dir, lrs=lrs, batch_sizes=batch_sizes, epochs=epochs,
                    strategy="multiworker", out_dir=out, seed=seed, max_train=max_train, max_eval=max_eval,
                    verbose=0)


def launch(worker_argv, workers=2, timeout=None):
    """Run this script with `--worker` + `worker_argv` as `workers` local processes; their reports."""
    from tflm.distribute import run_local_workers

    done = run_local_workers([sys.executable, os.path.abspath(__file__), "--worker", *worker_argv], workers,
                             timeout=timeout)
    return [json.loads(r.stdout.strip().splitlines()[-1]) for r in done]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (the chief's report)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="model SPEC (default: the shipped IMDb GPT-2 model)")
    p.add_argument("--task", default="sst2")
    p.add_argument("--lrs", default=[1e-4], type=lambda s: [float(x) for x in s.split(",")],
                   help="comma-separated learning rates")
    p.add_argument("--batch-sizes", default=[8], type=lambda s: [int(x) for x in s.split(",")],
                   help="comma-separated global batch sizes (each worker gets batch / workers)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-train", type=int, default=None)
    p.add_argument("--max-eval", type=int, default=None)
    p.add_argument("--tiny", action="store_true", help=f"a quick run: {TINY}")
    p.add_argument("--data", default=None, help="folder of the task's tsv files (default: shipped SST-2)")
    p.add_argument("--workers", type=int, default=2, help="local worker processes to launch")
    p.add_argument("--timeout", type=float, default=None, help="seconds before the launcher gives up")
    p.add_argument("--worker", action="store_true", help="run as one worker (TF_CONFIG set by the launcher)")
    args = p.parse_args(argv)
    settings = dict(model=args.model, task=args.task, lrs=args.lrs, batch_sizes=args.batch_sizes,
                    epochs=args.epochs, max_train=args.max_train, max_eval=args.max_eval, data_dir=args.data)
    if args.tiny:
        settings.update(TINY)
    if args.worker:
        report = worker(args.out, **settings)
        print(json.dumps({k: report[k] for k in ("replicas", "selected", "test_accuracy")}))
        return report
    reports = launch(sys.argv[1:] if argv is None else list(argv), args.workers, args.timeout)
    chief = reports[0]
    print(f"{args.workers} workers, {chief['replicas']} replicas in sync; selected {chief['selected']['run']}: "
          f"test accuracy {100 * chief['test_accuracy']:.1f}%; report in {args.out}")
    return reports


if __name__ == "__main__":
    main()

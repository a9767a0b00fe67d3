"""A fine-tune killed mid-epoch (SIGKILL) resumes to what an uninterrupted one reports.

Runs `tflm finetune` three times on the same settings, each in a fresh process:
  1. uninterrupted, into OUT/reference;
  2. into OUT/killed, SIGKILLed KILL_AFTER seconds after BackupAndRestore has backed up epoch 1
     (so mid-epoch 2);
  3. the same command again into OUT/killed: it resumes.
Then compares the two results.json (wall times and paths aside) and prints the verdict.

    python bench/kill_resume.py --model smollm2 --data ../shared/data --dtype bfloat16 \\
        --max-train 96 --max-eval 64 --out /tmp/kill_resume
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

from tflm import native_logs

native_logs.configure()  # before TensorFlow loads

from tflm.callbacks import BACKUP_DIR, AtomicBackupAndRestore  # noqa: E402
from tflm.finetune.grid import run_id  # noqa: E402
from tflm.finetune.report import comparable  # noqa: E402


def finetune_command(args, out):
    return [sys.executable, "-m", "tflm.cli", "finetune", "--model", args.model, "--task", args.task,
            "--data", args.data, "--splits", "files", "--max-train", str(args.max_train),
            "--max-eval", str(args.max_eval), "--lrs", args.lrs, "--batch-sizes", args.batch_sizes,
            "--epochs", str(args.epochs), "--dtype", args.dtype, "--seed", "0", "--out", out]


def run(cmd, log_path):
    t0 = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}); see {log_path}")
    return time.time() - t0


def run_and_kill(cmd, log_path, run_dir, kill_after):
    """Start `cmd`, SIGKILL it `kill_after` s after epoch 1 of `run_dir` is backed up; returns seconds until then."""
    t0 = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        while AtomicBackupAndRestore.completed_epochs(os.path.join(run_dir, BACKUP_DIR)) < 1:
            if proc.poll() is not None:
                sys.exit(f"the run to kill ended ({proc.returncode}) before its first epoch; see {log_path}")
            time.sleep(0.5)
        time.sleep(kill_after)
        if proc.poll() is not None:
            sys.exit(f"the run ended before the kill (lower --kill-after); see {log_path}")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return time.time() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny-gpt2")
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--data", required=True)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--max-train", type=int, default=96)
    ap.add_argument("--max-eval", type=int, default=64)
    ap.add_argument("--lrs", default="1e-4")
    ap.add_argument("--batch-sizes", default="16")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--kill-after", type=float, default=2.0, help="seconds after the epoch 1 backup (default 2)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if len(args.lrs.split(",")) != 1 or len(args.batch_sizes.split(",")) != 1:
        ap.error("--lrs and --batch-sizes: one value each (the kill lands in the grid's only run)")
    os.makedirs(args.out, exist_ok=True)
    ref_dir, killed_dir = os.path.join(args.out, "reference"), os.path.join(args.out, "killed")
    for d in (ref_dir, killed_dir):
        if os.path.exists(d):
            sys.exit(f"{d} exists: give an empty --out")
    run_name = run_id(float(args.lrs), int(args.batch_sizes))

    t_ref = run(finetune_command(args, ref_dir), os.path.join(args.out, "reference.log"))
    print(f"uninterrupted: {t_ref:.0f} s")
    t_kill = run_and_kill(finetune_command(args, killed_dir), os.path.join(args.out, "killed.log"),
                          os.path.join(killed_dir, run_name), args.kill_after)
    left = sorted(os.listdir(os.path.join(killed_dir, run_name)))
    print(f"killed (SIGKILL) after {t_kill:.0f} s, {args.kill_after:g} s after epoch 1 was backed up; state left: {left}")
    if "backup" not in left:
        sys.exit("the kill landed after the run had finished training (no backup left): lower --kill-after "
                 "or raise --max-train")
    t_res = run(finetune_command(args, killed_dir), os.path.join(args.out, "resumed.log"))
    with open(os.path.join(killed_dir, "grid_log.jsonl")) as f:
        resumed_at = [json.loads(line).get("epoch") for line in f if '"run_resume"' in line]
    print(f"resumed: {t_res:.0f} s, run_resume at epoch {resumed_at}")

    reports = []
    for d in (ref_dir, killed_dir):
        with open(os.path.join(d, "results.json")) as f:
            reports.append(json.load(f))
    same = comparable(reports[0]) == comparable(reports[1])
    for name, r in zip(("uninterrupted", "killed + resumed"), reports):
        sel = r["selected"]
        print(f"{name:17s} selected {sel['run']} epoch {sel['best_epoch']}: dev {sel['dev_accuracy']:.4f} "
              f"test {sel['test_accuracy']:.4f}; dev curve {r['runs'][0]['history']['val_accuracy']}")
    print(f"identical reports (runs, histories, selection, test accuracy): {'yes' if same else 'NO'}")
    verdict = {"model": args.model, "dtype": args.dtype, "task": args.task, "max_train": args.max_train,
               "resumed_at_epoch": resumed_at, "identical": same, "reference": comparable(reports[0]),
               "resumed": comparable(reports[1])}
    with open(os.path.join(args.out, "kill_resume.json"), "w") as f:
        json.dump(verdict, f, indent=1)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: fine-tuning step of a real LM, tflm `model.fit` vs Hugging Face transformers + torch.

    python bench/finetune.py [--model SPEC] [--data ../shared/data] [--steps N]
                             [--batch-sizes 16,32] [--dtypes float32,bfloat16] [--jit] [--diagnostics]

Both engines train the paper's classifier (the LM body, f at the last real token, a linear
head; Adam, sparse cross-entropy) on the SAME batches: SST-2 training sentences, tokenized
once by tflm, cut into tflm's length-bucketed training batches (`train_plan`, seed 0, epoch 0,
padded to multiples of 8). The first `--steps` + 1 batches of the plan are used.

- tflm: `LMSnapshot(lm).classifier(2)` compiled as `tflm finetune` compiles it, trained by
  `model.fit` on `tflm.finetune.data.distributed_dataset` (the pipeline of `tflm finetune`),
  bf16 = the Keras `mixed_bfloat16` policy (float32 weights). Times come from a callback at
  the end of every batch.
- transformers: `LlamaForSequenceClassification` with the same weights (the GGUF read by
  transformers' GGUF loader, the body copied in), `torch.optim.Adam` (eps 1e-7 as Keras), bf16 =
  `torch.autocast("cpu", torch.bfloat16)` around the forward pass (float32 weights), the loss
  in float32.

Printed per (dtype, batch size): the first step (tracing + first execution for tflm; first
execution for torch), the steady state over the remaining steps in examples/s and tok/s of
real tokens, and the ratio tflm / transformers. Issue 17's targets: steady state >= 1.5x in
float32 and bf16 at batch 16 and 32; tflm's first step <= 10 s.

`--fused-adam` adds tflm with `FusedAdam` (`tflm finetune --optimizer fused_adam`). `--jit` adds
tflm with `jit_compile=True` (XLA; it compiles once per distinct padded length,
which the first-step column then shows). `--diagnostics` adds, for the first dtype and batch
size, tflm with the token embedding frozen (the dense Adam update of the 49,152 x 576 table
and its gradient then drop out: a measurement of their cost, not a training mode) and the
fixed cost of a `tflm finetune` run outside the training steps: model load, snapshot,
building and compiling the classifier, one dev evaluation (872 sentences), and
`save_weights`.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from tflm import native_logs  # noqa: E402

native_logs.configure()  # before TensorFlow loads

import real_lm  # noqa: E402  (bench/real_lm.py: the transformers loader and the tiny fallback model)

HERE = os.path.dirname(os.path.abspath(__file__))
LR = 1e-4


def plan_batches(split, batch_size, steps, pad_to_multiple=8):
    """The first `steps` + 1 training batches of tflm's epoch-0 plan: index arrays and padded lengths."""
    from tflm.features.batching import padded_length
    from tflm.finetune import data as data_lib

    plan = data_lib.train_plan(split.lengths, batch_size, seed=0, epoch=0)[: steps + 1]
    padded = [padded_length(max(split.lengths[b]), pad_to_multiple) for b in plan]
    return plan, padded


def step_timer():
    """A Keras callback recording the time at the start of `fit` and at the end of every batch."""
    import keras

    class StepTimes(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.times = [time.perf_counter()]

        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])  # the step has run
            self.times.append(time.perf_counter())

    return StepTimes()


def tflm_steps(lm, split, plan, jit_compile=False, freeze_embeddings=False, optimizer="adam"):
    """Seconds of the first step and of each later step of `model.fit` on `plan` (tflm's pipeline)."""
    import keras

    from tflm.distribute import get_strategy
    from tflm.finetune import data as data_lib
    from tflm.finetune.classifier import LMSnapshot
    from tflm.finetune.grid import _compile

    strategy = get_strategy("one")
    ds = data_lib.distributed_dataset(strategy, split, lambda: plan, len(plan), weighted=False)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = LMSnapshot(lm).classifier(2)
        if freeze_embeddings:
            model.backbone.token_embedding.trainable = False
        _compile(model, LR, jit_compile, optimizer)
    timer = step_timer()
    model.fit(ds, epochs=1, verbose=0, callbacks=[timer], shuffle=False)
    t = np.diff(timer.times)
    return float(t[0]), t[1:]


def hf_classifier(hf_lm, num_labels=2):
    """`LlamaForSequenceClassification` whose body is `hf_lm.model` (the same weights)."""
    import torch
    import transformers

    config = hf_lm.config
    config.num_labels = num_labels
    config.pad_token_id = config.pad_token_id if config.pad_token_id is not None else 0
    torch.manual_seed(0)
    model = transformers.LlamaForSequenceClassification(config)
    model.model.load_state_dict(hf_lm.model.state_dict())
    return model.float().train()


def hf_steps(hf_lm, split, plan, padded, dtype):
    """Seconds of the first and later Adam steps of transformers on the same (right-padded) batches."""
    import torch

    from tflm.tokenization.text_encoding import pad_batch

    model = hf_classifier(hf_lm)
    opt = torch.optim.Adam(model.parameters(), lr=LR, eps=1e-7)
    times = []
    for idx, length in zip(plan, padded):
        tok, mask = pad_batch([split.ids[i] for i in idx], length=length)
        ids = torch.from_numpy(tok.astype(np.int64))
        am = torch.from_numpy(mask.astype(np.int64))
        labels = torch.from_numpy(np.asarray(split.labels[idx], np.int64))
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            # pool at the last real token, as tflm does (no pad-token search)
            h = model.model(input_ids=ids, attention_mask=am).last_hidden_state
            logits = model.score(h[torch.arange(len(idx)), am.sum(1) - 1])
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return times[0], np.asarray(times[1:])


def fixed_cost(spec, data, dtype, batch_size):
    """Seconds of what a `tflm finetune` run pays outside its training steps (one of each)."""
    from tflm.distribute import get_strategy
    from tflm.finetune import data as data_lib
    from tflm.finetune.classifier import LMSnapshot
    from tflm.finetune.grid import _compile
    from tflm.models import load_lm
    from tflm.tasks import load_split

    out = {}
    t = time.perf_counter()
    lm = load_lm(spec).with_dtype(dtype)
    out["load_lm"] = time.perf_counter() - t
    dev = data_lib.encode_split(lm.tokenizer, *load_split("sst2", "dev", data), max_length=lm.max_sequence_length)
    t = time.perf_counter()
    snapshot = LMSnapshot(lm)
    out["snapshot"] = time.perf_counter() - t
    strategy = get_strategy("one")
    t = time.perf_counter()
    with strategy.scope():
        model = snapshot.classifier(2)
        _compile(model, LR, False)
    out["build + compile"] = time.perf_counter() - t
    plan = data_lib.eval_plan(dev.lengths, batch_size)
    ds = data_lib.distributed_dataset(strategy, dev, lambda: plan, len(plan), weighted=True)
    t = time.perf_counter()
    model.evaluate(ds, steps=len(plan), verbose=0)
    out[f"dev evaluation ({len(dev):,} sentences, first: traces)"] = time.perf_counter() - t
    t = time.perf_counter()
    model.evaluate(ds, steps=len(plan), verbose=0)
    out["dev evaluation again"] = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        model.save_weights(os.path.join(d, "best.weights.h5"))
        out["save_weights"] = time.perf_counter() - t
    return out


def measure(spec, data, dtype, bs, steps, engine):
    """One (dtype, batch size, engine) measurement in this process: (first step s, later step s array, real
    tokens of the later steps, computed tokens of the later steps)."""
    import tflm
    from tflm.finetune.data import encode_split
    from tflm.tasks import load_split

    texts, labels = load_split("sst2", "train", data)
    lm = tflm.load_lm(spec)
    split = encode_split(lm.tokenizer, texts, labels, max_length=lm.max_sequence_length)
    plan, padded = plan_batches(split, bs, steps)
    if engine == "transformers":
        first, later = hf_steps(real_lm.load_hf(spec), split, plan, padded, dtype)
    else:
        first, later = tflm_steps(lm.with_dtype(dtype), split, plan, jit_compile=engine == "tflm jit",
                                  freeze_embeddings=engine == "tflm, embedding frozen",
                                  optimizer="fused_adam" if engine == "tflm fused_adam" else "adam")
    real = sum(int(split.lengths[b].sum()) for b in plan[1:])
    return first, later, real, sum(bs * n for n in padded[1:])


def in_fresh_process(*args):
    """`measure` (or `fixed_cost`) in a fresh Python process: every engine starts cold, as a user's command
    does, and the memory of one (a 135M-parameter model with Adam state) is gone before the next."""
    import json
    import subprocess

    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", json.dumps(args)],
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{args}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="tflm model SPEC (HF folder or .gguf) or 'tiny'; default SmolLM2, else tiny")
    p.add_argument("--data", default=real_lm.DEFAULT_DATA)
    p.add_argument("--steps", type=int, default=12, help="steady-state steps after the first (default 12)")
    p.add_argument("--batch-sizes", default="16,32")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--jit", action="store_true", help="also tflm with jit_compile=True")
    p.add_argument("--fused-adam", action="store_true", help="also tflm with --optimizer fused_adam")
    p.add_argument("--diagnostics", action="store_true",
                   help="also tflm with the token embedding frozen, and a run's fixed cost")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: one measurement, JSON in and out
    args = p.parse_args(argv)
    import json

    if args.one:
        kind, *rest = json.loads(args.one)
        if kind == "fixed":
            print(json.dumps(fixed_cost(*rest)))
        else:
            first, later, real, computed = measure(*rest)
            print(json.dumps([first, list(map(float, later)), real, computed]))
        return

    import torch

    from tflm.models.gguf import find_smollm2_gguf
    from tflm.report import text_table

    spec = None if args.model == "tiny" else (args.model or find_smollm2_gguf())
    spec = spec or real_lm.tiny_hf_llama(tempfile.mkdtemp(prefix="tiny_hf_llama_"))
    print(f"model {spec}")
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"load average {os.getloadavg()[0]:.1f}; SST-2 train batches, lr {LR:g}; each measurement in a fresh "
          "process", flush=True)
    rows = []
    engines = ["tflm"] + (["tflm jit"] if args.jit else []) + (["tflm fused_adam"] if args.fused_adam else [])
    for di, dtype in enumerate(args.dtypes.split(",")):
        for bi, bs in enumerate(int(b) for b in args.batch_sizes.split(",")):
            names = engines + (["tflm, embedding frozen"] if args.diagnostics and di == 0 and bi == 0 else [])
            result = {}
            for name in names + ["transformers"]:
                first, later, real, computed = in_fresh_process("step", spec, args.data, dtype, bs, args.steps, name)
                later = np.asarray(later)
                result[name] = (first, later)
                print(f"  {dtype:8s} batch {bs:2d} {name:24s} first step {first:6.1f} s, then "
                      f"{later.mean():.2f} s/step, {real / later.sum():6,.0f} tok/s", flush=True)
            hf_rate = real / result["transformers"][1].sum()
            for name, (first, later) in result.items():
                rate = real / later.sum()
                rows.append((dtype, bs, name, first, bs * len(later) / later.sum(), rate, rate / hf_rate))
            print(f"  ({args.steps} steps, {real:,} real tokens, padding {1 - real / computed:.1%} of the computed "
                  "tokens)")
    print("\nsteady state = the steps after the first; tok/s of real tokens; ratio = tok/s / transformers' "
          f"(target >= 1.5); load average {os.getloadavg()[0]:.1f}")
    print(text_table(["dtype", "batch", "engine", "first step s", "ex/s", "tok/s", "ratio"],
                     [[d, str(b), n, f"{f:.1f}", f"{e:.1f}", f"{r:,.0f}", f"{q:.2f}"] for d, b, n, f, e, r, q in rows]))
    if args.diagnostics:
        dtype, bs = args.dtypes.split(",")[0], int(args.batch_sizes.split(",")[0])
        costs = in_fresh_process("fixed", spec, args.data, dtype, bs)
        costs["first training step (from the table)"] = [r[3] for r in rows if r[:3] == (dtype, bs, "tflm")][0]
        print(f"\nfixed cost of a run outside the steady-state steps ({dtype}, batch {bs}; target <= 60 s):")
        for k, v in costs.items():
            print(f"  {k:48s} {v:6.1f} s")
        total = sum(v for k, v in costs.items() if k != "dev evaluation again")
        print(f"  {'total (one dev evaluation)':48s} {total:6.1f} s")


if __name__ == "__main__":
    main()

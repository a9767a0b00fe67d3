"""What the first fine-tuning step costs: tracing, graph optimisation + first execution, later steps.

    python bench/first_step.py [--model SPEC] [--dtype bfloat16] [--options baseline,grappler-off]

The SmolLM2 classifier (`LMSnapshot(lm).classifier(2)`, compiled as `tflm finetune` compiles it)
and its Keras `train_step` in one `tf.function` with a [None, None] input signature: the time of
`get_concrete_function` (Python tracing of forward + backward + Adam; the graph's op count is
printed), of the first call (Grappler's graph optimisation, function instantiation, the first
execution), of a second call on the same shape and of a call on a new length (no retrace). Each
option runs in a fresh process; `grappler-off` disables TensorFlow's graph optimizer
(`disable_meta_optimizer`), which shows its share of the first call and what it buys per step;
`no-<pass>` turns off one Grappler pass (`tf.config.optimizer.set_experimental_options`), to find
the passes that cost the first call most and buy the step least. `steady_s` is the median of three
more calls on the first shape.
Issue 17's target: the first step <= 10 s.
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tflm import native_logs  # noqa: E402

native_logs.configure()

# Grappler passes that `tf.config.optimizer.set_experimental_options` can turn off one by one.
PASSES = ("layout_optimizer", "constant_folding", "shape_optimization", "remapping", "arithmetic_optimization",
          "dependency_optimization", "loop_optimization", "function_optimization", "debug_stripper",
          "implementation_selector", "pin_to_host_optimization")
OPTIONS = ("baseline", "grappler-off") + tuple(f"no-{p}" for p in PASSES)


def measure(spec, dtype, option, batch=16, length=32):
    import numpy as np
    import tensorflow as tf

    if option == "grappler-off":
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    elif option.startswith("no-"):
        tf.config.optimizer.set_experimental_options({option[3:]: False})
    import tflm
    from tflm.finetune.classifier import LMSnapshot
    from tflm.finetune.grid import _compile

    t = time.perf_counter()
    lm = tflm.load_lm(spec).with_dtype(dtype)
    out = {"option": option, "load_s": time.perf_counter() - t}
    model = LMSnapshot(lm).classifier(2)
    _compile(model, 1e-4, False)
    t = time.perf_counter()
    model.optimizer.build(model.trainable_variables)
    out["optimizer_build_s"] = time.perf_counter() - t
    spec_x = {k: tf.TensorSpec([None, None], tf.int32) for k in ("token_ids", "padding_mask")}
    step = tf.function(lambda data: model.train_step(data), reduce_retracing=True)
    t = time.perf_counter()
    concrete = step.get_concrete_function((spec_x, tf.TensorSpec([None], tf.int32)))
    out["trace_s"] = time.perf_counter() - t
    out["graph_ops"] = len(concrete.graph.get_operations())
    y = np.zeros((batch,), np.int32)
    for name, n in (("first_call_s", length), ("second_call_s", length), ("new_length_s", length + 8)):
        x = {"token_ids": np.ones((batch, n), np.int32), "padding_mask": np.ones((batch, n), np.int32)}
        t = time.perf_counter()
        step((x, y))
        out[name] = time.perf_counter() - t
    x = {"token_ids": np.ones((batch, length), np.int32), "padding_mask": np.ones((batch, length), np.int32)}
    times = []
    for _ in range(3):
        t = time.perf_counter()
        step((x, y))
        times.append(time.perf_counter() - t)
    out["steady_s"] = float(np.median(times))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model SPEC (default SmolLM2, else tiny-llama)")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--options", default=",".join(OPTIONS))
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: one option in this process
    args = p.parse_args(argv)
    from tflm.models.gguf import find_smollm2_gguf

    spec = args.model or find_smollm2_gguf() or "tiny-llama"
    if args.one:
        print(json.dumps(measure(spec, args.dtype, args.one)))
        return
    print(f"model {spec}, {args.dtype}, batch 16 x 32 tokens; each option in a fresh process; load average "
          f"{os.getloadavg()[0]:.1f}")
    keys = ("trace_s", "first_call_s", "second_call_s", "new_length_s", "steady_s", "graph_ops")
    print(f"{'option':28s} " + " ".join(f"{k:>14s}" for k in keys))
    for option in args.options.split(","):
        if option not in OPTIONS:
            raise SystemExit(f"--options: unknown option {option!r}; choose from {', '.join(OPTIONS)}")
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--model", spec, "--dtype", args.dtype,
                               "--one", option], capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(proc.stderr[-3000:])
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{option:28s} " + " ".join(f"{r[k]:14.2f}" if k != "graph_ops" else f"{r[k]:14,d}" for k in keys))


if __name__ == "__main__":
    main()

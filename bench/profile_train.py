"""Where a fine-tuning step spends its time in tflm (TensorFlow): forward, backward, Adam, the matmul floor.

    python bench/profile_train.py [--model SPEC] [--shapes 16x32,32x32] [--dtypes bfloat16,float32]

For the classifier `tflm finetune` trains (`LMSnapshot(lm).classifier(2)`, compiled as
`tflm finetune` compiles it) and one batch of B x T tokens, it times (median of --repeats after a
warm-up call; components interleaved so machine noise hits all alike), each in its own `tf.function`:

- train step: Keras' `train_step` (forward + backward + Adam + metrics), what `model.fit` runs;
- forward: the classifier's loss, training=True (dropout on);
- forward + backward: the loss and its gradients (`tf.GradientTape`);
- Adam alone: `optimizer.apply` of fixed gradients to all weights (its cost does not depend on B x T),
  Keras' `Adam` and tflm's `FusedAdam` (TensorFlow's fused `ResourceApplyAdam` kernel);
- matmul floor: only the dense matmuls of forward + backward (per kernel Y = XW, dX = dY W^T,
  dW = X^T dY, same shapes and dtype) -- the arithmetic a step cannot avoid on this machine.

Adam here updates real variables, so the model's weights drift while it runs; nothing is saved.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tflm import native_logs  # noqa: E402

native_logs.configure()  # before TensorFlow loads

import numpy as np  # noqa: E402


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    np.asarray(out[0] if isinstance(out, (list, tuple)) else out)  # wait for the result
    return time.perf_counter() - t


def components(lm, batch, length):
    import tensorflow as tf

    from tflm.finetune.classifier import LMSnapshot
    from tflm.finetune.fused_adam import FusedAdam
    from tflm.finetune.grid import _compile

    model = LMSnapshot(lm).classifier(2)
    _compile(model, 1e-5, False)
    model.optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    x = {"token_ids": tf.constant(rng.integers(0, lm.backbone.vocabulary_size, (batch, length)).astype(np.int32)),
         "padding_mask": tf.ones((batch, length), tf.int32)}
    y = tf.constant(rng.integers(0, 2, batch).astype(np.int32))
    loss_fn = model.loss
    variables = model.trainable_variables

    def loss():
        return loss_fn(y, model(x, training=True))

    @tf.function
    def forward_backward():
        with tf.GradientTape() as tape:
            value = loss()
        return [value] + tape.gradient(value, variables)

    grads = [tf.convert_to_tensor(g) * 1e-6 for g in forward_backward()[1:]]
    fused = FusedAdam(1e-5)
    fused.build(variables)

    dtype = lm.backbone.dtype_policy.compute_dtype
    mats = []
    for w in variables:
        if len(w.shape) >= 2 and "embedding" not in w.path:
            w2 = tf.reshape(tf.cast(w, dtype), (w.shape[0], -1))
            a = tf.constant(rng.standard_normal((batch * length, w2.shape[0])), dtype=dtype)
            dy = tf.constant(rng.standard_normal((batch * length, w2.shape[1])), dtype=dtype)
            mats.append((a, w2, dy))

    @tf.function
    def matmuls():
        parts = []
        for a, w, dy in mats:
            parts += [tf.matmul(a, w)[:1, :1], tf.matmul(dy, w, transpose_b=True)[:1, :1],
                      tf.matmul(a, dy, transpose_a=True)[:1, :1]]
        return tf.add_n([tf.cast(p, "float32") for p in parts])

    flops = sum(3 * 2 * a.shape[0] * w.shape[0] * w.shape[1] for a, w, _ in mats)
    return {
        "train step": tf.function(lambda: model.train_step((x, y))["loss"]),
        "forward": tf.function(loss),
        "forward + backward": forward_backward,
        "Adam alone": tf.function(lambda: model.optimizer.apply(grads, variables) or tf.constant(0.0)),
        "FusedAdam alone": tf.function(lambda: fused.apply(grads, variables) or tf.constant(0.0)),
        "matmul floor": matmuls,
    }, flops


def profile(lm, batch, length, repeats):
    fns, flops = components(lm, batch, length)
    tokens = batch * length
    first = {name: timed(fn) for name, fn in fns.items()}  # tracing + first execution
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    med = {name: float(np.median(t)) for name, t in times.items()}
    step = med["train step"]
    print(f"  {lm.dtype}, batch {batch} x {length} = {tokens} tokens; first call (trace + run) of the train step "
          f"{first['train step']:.1f}s; matmul floor {flops / 1e9:.0f} GFLOP per step")
    for name, s in med.items():
        extra = f", {flops / s / 1e9:6,.0f} GFLOPS" if name == "matmul floor" else ""
        print(f"    {name:20s} {s:7.3f}s  {100 * s / step:5.1f}% of the train step  ({tokens / s:7,.0f} tok/s{extra})")
    rest = step - med["forward + backward"] - med["Adam alone"]
    print(f"    {'rest (metrics, casts)':20s} {rest:7.3f}s  {100 * rest / step:5.1f}% (train step - forward+backward"
          f" - Adam)")
    return med


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model SPEC (default SmolLM2 GGUF, else tiny-llama)")
    p.add_argument("--shapes", default="16x32,32x32", help="comma-separated BxT batch shapes")
    p.add_argument("--dtypes", default="bfloat16,float32")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    import tflm
    from tflm.models.gguf import find_smollm2_gguf

    base = tflm.load_lm(args.model or find_smollm2_gguf() or "tiny-llama")
    n_params = base.backbone.count_params()
    print(f"model {base.name}: {base.architecture}, {len(base.backbone.transformer_layers)} layers, "
          f"d={base.hidden_dim}, {n_params / 1e6:.1f}M parameters; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")
    for dtype in args.dtypes.split(","):
        lm = base.with_dtype(dtype)
        for shape in args.shapes.split(","):
            b, t = (int(v) for v in shape.lower().split("x"))
            profile(lm, b, t, args.repeats)


if __name__ == "__main__":
    main()

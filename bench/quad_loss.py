"""Benchmark: the Quad loss in Gram form vs the naive V-dim form, and training throughput.

Run by hand (not part of the tests):

    PYTHONPATH=. python bench/quad_loss.py                 # the full benchmark
    PYTHONPATH=. python bench/quad_loss.py --quick         # small shapes, a smoke run

Part 1 -- loss + gradient wall time at d=768, V=50257 (GPT-2 base), 8192
positions (B=8, T=1024), float32, under `tf.function` (graph mode; --jit adds
XLA, which was slower for all four rows on the 2-core CPU this was written on):

* learned Phi: gradients w.r.t. the features and Phi; the Gram form
  recomputes G = Phi Phi^T every step (O(V d^2)), the naive form builds the
  (N, V) logits (O(N d V)).
* frozen Phi: gradient w.r.t. the features only; the Gram form uses a
  precomputed G (O(N d^2)), as `CausalLM` does for `--fix-phi`.

Reports the median of --repeats timed calls after --warmup calls and the
naive/Gram ratios (targets: >= 5x learned, >= 30x frozen).

Part 2 -- tokens/s of a full `CausalLM` training step (`model.fit`, AdamW,
global clipnorm, jit_compile=True, as `tflm pretrain`) on the "small" GPT-2
config (4 layers, d=128, V=50257) at seq 256, batch 16: cross-entropy (tied)
vs Quad (tied, untied learned Phi, untied frozen Phi).
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tflm import native_logs  # noqa: E402

native_logs.configure()  # before TensorFlow loads: no native log spam in the output

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tflm.lm.quad_loss import QuadLoss, gram_matrix  # noqa: E402


def timed(fn, warmup, repeats):
    """Median wall time (s) of `fn()` (its outputs are fetched) after `warmup` calls."""
    for _ in range(warmup):
        [t.numpy() for t in tf.nest.flatten(fn())]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        [t.numpy() for t in tf.nest.flatten(fn())]
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_loss(batch, seq_len, d, vocab, warmup, repeats, jit):
    rng = np.random.default_rng(0)
    feats = tf.constant(rng.normal(size=(batch, seq_len, d)).astype("float32") / np.sqrt(d))
    phi = tf.constant(rng.normal(size=(vocab, d)).astype("float32") / np.sqrt(d))
    targets = tf.constant(rng.integers(0, vocab, size=(batch, seq_len)).astype("int32"))
    mask = tf.ones((batch, seq_len), tf.float32)
    gram_layer, naive_layer = QuadLoss(use_gram=True), QuadLoss(use_gram=False)
    frozen_gram = gram_matrix(phi)

    def learned(layer):
        @tf.function(jit_compile=jit)
        def step(f, p):
            with tf.GradientTape() as tape:
                tape.watch([f, p])
                loss = layer(f, p, targets, mask)  # Gram form: G recomputed from Phi each step
            gf, gp = tape.gradient(loss, [f, p])
            return loss, gf, tf.convert_to_tensor(gp)

        return lambda: step(feats, phi)

    def frozen(layer, gram):
        @tf.function(jit_compile=jit)
        def step(f):
            with tf.GradientTape() as tape:
                tape.watch(f)
                loss = layer(f, phi, targets, mask, gram=gram)
            return loss, tape.gradient(loss, f)

        return lambda: step(feats)

    # The two forms agree (a sanity check of what is being timed).
    lg, gfg, gpg = learned(gram_layer)()
    ln, gfn, gpn = learned(naive_layer)()
    rel = lambda a, b: float(tf.reduce_max(tf.abs(a - b)) / tf.reduce_max(tf.abs(b)))  # noqa: E731
    print(f"  check: |loss diff|/|loss| = {abs(float(lg - ln)) / abs(float(ln)):.1e}, "
          f"grad f rel {rel(gfg, gfn):.1e}, grad phi rel {rel(gpg, gpn):.1e}")

    rows = {}
    for name, fn in [
        ("learned Phi, naive", learned(naive_layer)),
        ("learned Phi, Gram", learned(gram_layer)),
        ("frozen Phi, naive", frozen(naive_layer, None)),
        ("frozen Phi, Gram", frozen(gram_layer, frozen_gram)),
    ]:
        rows[name] = timed(fn, warmup, repeats)
        print(f"  {name:22s} {rows[name] * 1e3:10.1f} ms", flush=True)
    return rows


class StepTimes(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times, self._t = [], time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        self.times.append(now - self._t)
        self._t = now


def bench_training(config, batch, seq_len, warmup, repeats):
    from tflm.lm.pretrain import ReplicaAwareAdamW, build_causal_lm

    rng = np.random.default_rng(0)
    results = {}
    for name, objective, untied, fix_phi in [
        ("xent, tied", "xent", False, False),
        ("quad, tied", "quad", False, False),
        ("quad, untied learned Phi", "quad", True, False),
        ("quad, untied frozen Phi", "quad", True, True),
    ]:
        keras.utils.set_random_seed(0)
        model, tok = build_causal_lm(objective, config, untied=untied, fix_phi=fix_phi)
        vocab = model.backbone.vocabulary_size
        ids = rng.integers(0, vocab, size=(batch, seq_len + 1)).astype("int32")
        x = {"token_ids": ids[:, :-1], "padding_mask": np.ones((batch, seq_len), "int32")}
        ds = tf.data.Dataset.from_tensors((x, ids[:, 1:], np.ones((batch, seq_len), "float32"))).repeat()
        model(x)
        model.compile(optimizer=ReplicaAwareAdamW(1e-4, weight_decay=0.01, global_clipnorm=1.0), jit_compile=True)
        cb = StepTimes()
        model.fit(ds, steps_per_epoch=warmup + repeats, epochs=1, verbose=0, callbacks=[cb])
        step = statistics.median(cb.times[warmup:])
        results[name] = (step, batch * seq_len / step)
        print(f"  {name:26s} {step * 1e3:9.1f} ms/step {batch * seq_len / step:10.0f} tok/s", flush=True)
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--d", type=int, default=768)
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--jit", action="store_true", help="XLA-compile the part-1 tf.functions")
    p.add_argument("--train-config", default="small")
    p.add_argument("--train-batch", type=int, default=16)
    p.add_argument("--train-seq-len", type=int, default=256)
    p.add_argument("--train-steps", type=int, default=5, help="timed training steps (after 2 warm-up steps)")
    p.add_argument("--skip-loss", action="store_true")
    p.add_argument("--skip-training", action="store_true")
    p.add_argument("--quick", action="store_true", help="small shapes: a smoke run in seconds")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.seq_len, args.d, args.vocab, args.repeats = 2, 64, 64, 2000, 2
        args.train_config, args.train_batch, args.train_seq_len, args.train_steps = "tiny", 2, 32, 2

    devices = ", ".join(d.name for d in tf.config.list_logical_devices())
    print(f"TF {tf.__version__}, keras {keras.__version__}; devices: {devices}; {os.cpu_count()} CPUs")
    if not args.skip_loss:
        n = args.batch * args.seq_len
        print(f"\nQuad loss + gradient: d={args.d}, V={args.vocab}, {n} positions "
              f"(B={args.batch}, T={args.seq_len}), float32, jit_compile={args.jit}; "
              f"median of {args.repeats} after {args.warmup} warm-up")
        rows = bench_loss(args.batch, args.seq_len, args.d, args.vocab, args.warmup, args.repeats,
                          jit=args.jit)
        learned = rows["learned Phi, naive"] / rows["learned Phi, Gram"]
        frozen = rows["frozen Phi, naive"] / rows["frozen Phi, Gram"]
        print(f"\n  {'':22s} {'naive ms':>10s} {'Gram ms':>10s} {'speed-up':>9s} {'target':>7s}")
        for kind, ratio, target in (("learned Phi", learned, 5), ("frozen Phi", frozen, 30)):
            print(f"  {kind:22s} {rows[kind + ', naive'] * 1e3:10.1f} {rows[kind + ', Gram'] * 1e3:10.1f} "
                  f"{ratio:8.1f}x {'>=' + str(target) + 'x':>7s} {'ok' if ratio >= target else 'BELOW'}")
    if not args.skip_training:
        print(f"\nTraining step ({args.train_config} config, batch {args.train_batch}, seq "
              f"{args.train_seq_len}, AdamW, jit_compile=True): median of {args.train_steps} steps after 2")
        res = bench_training(args.train_config, args.train_batch, args.train_seq_len, 2, args.train_steps)
        base = res["xent, tied"][1]
        for name, (_, tps) in res.items():
            print(f"  {name:26s} {tps / base:6.2f}x the cross-entropy tokens/s")


if __name__ == "__main__":
    main()

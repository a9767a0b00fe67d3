"""Where a Llama forward pass spends its time in tflm (TensorFlow), per component.

    python bench/profile_lm.py [--model SPEC] [--batch 256] [--length 32] [--repeats 3]

For one batch of B x T tokens (default 256 x 32 = 8,192 tokens, one SST-2 sized bucket)
and each dtype, it times (best of --repeats, components interleaved so machine noise
hits all alike):

- trace: the first call of the extractor's traced-once forward pass (tracing + warm-up),
- backbone: the whole forward pass (`ForwardPass`, dynamic input_signature), padded and as
  the packed step (block-causal mask from segment ids, per-token positions),
- matmuls: only the model's dense matmuls (same shapes, same dtype, 7 per layer) -- the
  arithmetic floor of this batch on this machine,
- per layer, scaled by the number of layers: attention (q/k/v/o projections, RoPE,
  softmax) three ways -- tflm's (grouped-query attention on K/V as they are), tflm's
  scores path with keras-hub's repeated K/V (`LlamaAttention.call`, the path before issue 19)
  and keras-hub's own (a twin backbone without tflm's attention path) --, RoPE alone (q and
  k), the two RMS norms, the SiLU-gated FFN, and the attention mask construction.

It prints seconds and tok/s for each. The second shape (--long-length, default 512 with
the same token budget) shows whether long texts change the split.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tflm import native_logs  # noqa: E402

native_logs.configure()  # before TensorFlow loads: no native log spam in the output

import numpy as np  # noqa: E402


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    if isinstance(out, (list, tuple)):
        out = out[0]
    np.asarray(out)  # wait for the result
    return time.perf_counter() - t


def components(lm, batch, length):
    import keras
    import tensorflow as tf
    from keras_hub.src.models.llama.llama_attention import LlamaAttention

    from tflm.models.serialization import serialize_backbone

    from tflm.features.feature_extractor import FeatureExtractor
    from tflm.features.forward_pass import ForwardPass

    bb = lm.backbone
    dtype = bb.dtype_policy.compute_dtype
    layer = bb.transformer_layers[0]
    n_layers = len(bb.transformer_layers)
    d = bb.hidden_dim
    rng = np.random.default_rng(0)
    ids = rng.integers(0, bb.vocabulary_size, (batch, length)).astype(np.int32)
    mask = np.ones_like(ids)
    positions = np.full((batch, 1), length - 1, np.int32)
    pos_ids = np.tile(np.arange(length, dtype=np.int32), (batch, 1))  # one text per packed row
    x = tf.constant(rng.standard_normal((batch, length, d)), dtype=dtype)
    attn_mask = tf.constant(np.tril(np.ones((length, length), np.int32))[None].repeat(batch, 0))
    att = layer._self_attention_layer
    rope = att.rotary_embedding_layer
    q = att._query_dense(x)
    k = att._key_dense(x)
    kernels = [w for w in layer.trainable_weights if len(w.shape) >= 2]
    twin = keras.saving.deserialize_keras_object(serialize_backbone(bb))  # keras-hub's attention path
    twin.set_weights(bb.get_weights())
    keras_hub_att = twin.transformer_layers[0]._self_attention_layer
    fwd = ForwardPass(FeatureExtractor(bb, lm.head, features=["f"]))

    # every dense kernel as (fan_in, fan_out), with a (B*T, fan_in) input of the compute dtype
    mats = []
    for w in kernels:
        w2 = np.reshape(np.asarray(w), (d, -1)) if w.shape[0] == d else np.reshape(np.asarray(w), (-1, d))
        a = rng.standard_normal((batch * length, w2.shape[0])).astype(np.float32)
        mats.append((tf.constant(a, dtype=dtype), tf.constant(w2, dtype=dtype)))

    @tf.function
    def matmuls():
        return tf.add_n([tf.reduce_sum(tf.cast(tf.matmul(a, w)[:1], "float32")) for a, w in mats])

    fns = {
        "backbone (full forward)": (lambda: fwd(ids, mask, positions), 1),
        "backbone, packed step": (lambda: fwd.packed(ids, mask, pos_ids, positions), 1),
        "matmuls only": (matmuls, n_layers),
        "attention block": (tf.function(lambda h: att(h, attention_mask=attn_mask)), n_layers),
        "attention, repeated K/V": (tf.function(lambda h: LlamaAttention.call(att, h, attention_mask=attn_mask)),
                                    n_layers),
        "attention, keras-hub's": (tf.function(lambda h: keras_hub_att(h, attention_mask=attn_mask)), n_layers),
        "RoPE (q and k)": (tf.function(lambda a, b: (rope(a), rope(b))), n_layers),
        "RMS norms (2)": (tf.function(lambda h: (layer._self_attention_layernorm(h),
                                                 layer._feedforward_layernorm(h))), n_layers),
        "SiLU-gated FFN": (tf.function(lambda h: layer._feedforward_output_dense(
            layer._feedforward_intermediate_dense(h) * tf.cast(
                tf.nn.silu(tf.cast(layer._feedforward_gate_dense(h), "float32")), dtype))), n_layers),
        "attention mask": (tf.function(lambda m: layer._compute_self_attention_mask(
            x, tf.constant(mask), None, None, None)), n_layers),
    }
    args = {"backbone (full forward)": (), "backbone, packed step": (), "matmuls only": (), "attention block": (x,),
            "attention, repeated K/V": (x,), "attention, keras-hub's": (x,), "RoPE (q and k)": (q, k),
            "RMS norms (2)": (x,), "SiLU-gated FFN": (x,), "attention mask": (x,)}
    return fns, args


def profile(lm, batch, length, repeats):
    fns, args = components(lm, batch, length)
    tokens = batch * length
    first = {name: timed(fn, *args[name]) for name, (fn, _) in fns.items()}
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, (fn, _) in fns.items():
            best[name] = min(best[name], timed(fn, *args[name]))
    print(f"  {lm.dtype}, batch {batch} x {length} = {tokens} tokens; first call of the forward pass "
          f"(trace + run) {first['backbone (full forward)']:.2f}s, of the packed step "
          f"{first['backbone, packed step']:.2f}s")
    total = best["backbone (full forward)"]
    for name, (_, scale) in fns.items():
        s = best[name] * scale
        print(f"    {name:26s} {s:7.3f}s  {100 * s / total:5.1f}% of the forward pass  ({tokens / s:9,.0f} tok/s)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model SPEC (default SmolLM2 GGUF, else tiny-llama)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--length", type=int, default=32)
    p.add_argument("--long-length", type=int, default=512)
    p.add_argument("--dtypes", default="bfloat16,float32")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    import tflm
    from tflm.models.gguf import find_smollm2_gguf

    base = tflm.load_lm(args.model or find_smollm2_gguf() or "tiny-llama")
    print(f"model {base.name}: {base.architecture}, {len(base.backbone.transformer_layers)} layers, "
          f"d={base.hidden_dim}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for dtype in args.dtypes.split(","):
        lm = base.with_dtype(dtype)
        profile(lm, args.batch, args.length, args.repeats)
        if args.long_length:
            profile(lm, max(1, args.batch * args.length // args.long_length), args.long_length, args.repeats)


if __name__ == "__main__":
    main()

"""Softmax cross-entropy as a Keras loss layer: -f.phi_w + log Z_f, padding masked."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tflm")
class CrossEntropyLoss(keras.layers.Layer):
    """Mean over real positions of ``-f(s).phi_w + log sum_w' exp(f(s).phi_w')``.

    Call with ``(features, phi, targets, mask)``: features (B, T, d),
    phi (V, d), targets (B, T) int next-token ids, mask (B, T) 1 for real
    target positions. Returns a scalar.
    """

    def call(self, features, phi, targets, mask):
        # The (B, T, V) product runs in the features' dtype (bf16 under mixed
        # precision); the log-sum-exp over V in at least float32.
        logits = ops.einsum("btd,vd->btv", features, ops.cast(phi, features.dtype))
        if logits.dtype in ("bfloat16", "float16"):
            logits = ops.cast(logits, "float32")
        log_z = ops.logsumexp(logits, axis=-1)
        target_logit = ops.take_along_axis(logits, ops.expand_dims(ops.cast(targets, "int32"), -1), axis=-1)[..., 0]
        return masked_mean(log_z - target_logit, mask)


def masked_mean(values, mask):
    mask = ops.cast(mask, values.dtype)
    return ops.sum(values * mask) / ops.maximum(ops.sum(mask), 1.0)

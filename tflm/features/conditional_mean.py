"""Phi p_f(s) = softmax(f Phi^T) Phi, the conditional mean embedding."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tflm")
class ConditionalMean(keras.layers.Layer):
    """Call with ``(f (B, d), phi (V, d))``; returns ``softmax(f phi^T) phi`` (B, d).

    Also available: `log_partition(f, phi)` = log Z_f = logsumexp(f phi^T).
    """

    def call(self, f, phi):
        phi = ops.cast(phi, f.dtype)
        p = ops.softmax(ops.matmul(f, ops.transpose(phi)), axis=-1)
        return ops.matmul(p, phi)

    @staticmethod
    def log_partition(f, phi):
        return ops.logsumexp(ops.matmul(f, ops.transpose(ops.cast(phi, f.dtype))), axis=-1)

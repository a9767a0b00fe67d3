"""Phi p_f(s) = softmax(f Phi^T) Phi, the conditional mean embedding."""

import keras
from keras import ops

from tflm.models.output_embeddings import next_word_distribution, word_logits


@keras.saving.register_keras_serializable(package="tflm")
class ConditionalMean(keras.layers.Layer):
    """Call with ``(f (B, d), phi (V, d))``; returns ``softmax(f phi^T) phi`` (B, d).

    Also available: `log_partition(f, phi)` = log Z_f = logsumexp(f phi^T).
    """

    def call(self, f, phi):
        return ops.matmul(next_word_distribution(f, phi), ops.cast(phi, f.dtype))

    @staticmethod
    def log_partition(f, phi):
        return ops.logsumexp(word_logits(f, phi), axis=-1)

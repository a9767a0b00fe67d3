"""f(s): the final hidden state at the last real token."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tflm")
class LastTokenPooling(keras.layers.Layer):
    """Picks position ``max{t : padding_mask[t] = 1}`` of each sequence.

    Uses the padding mask, never a pad-token search (GPT-2's pad id 0 is the
    real token "!"). Works for right- or left-padded batches.
    Call with ``(hidden_states (B, T, d), padding_mask (B, T))``.
    """

    def call(self, hidden_states, padding_mask):
        t = ops.shape(padding_mask)[1]
        positions = ops.arange(t, dtype="int32")[None, :]
        last = ops.max(ops.where(ops.cast(padding_mask, "bool"), positions, -1), axis=1)
        last = ops.maximum(last, 0)
        return ops.take_along_axis(hidden_states, last[:, None, None], axis=1)[:, 0, :]

"""Scores of chosen words as next word: the paper's subset / class / posneg features."""

import keras
from keras import ops

from tflm.models.output_embeddings import word_logits

MODES = ("logits", "probs", "logprobs")


@keras.saving.register_keras_serializable(package="tflm")
class WordScores(keras.layers.Layer):
    """``f . phi_w`` for the chosen ids (paper default), or p_f(w) / log p_f(w).

    Args:
        token_ids: the word ids (from `tflm.tokenization.word_token_ids`).
        mode: "logits" (paper-compatible), "probs" or "logprobs".

    Call with ``(f (B, d), phi (V, d))``; returns (B, len(token_ids)).
    """

    def __init__(self, token_ids, mode="logits", **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"unknown word-score mode {mode!r}; choose one of {MODES}")
        if not token_ids:
            raise ValueError("WordScores needs at least one token id")
        self.token_ids = [int(i) for i in token_ids]
        self.mode = mode

    def call(self, f, phi):
        phi = ops.cast(phi, f.dtype)
        chosen = ops.matmul(f, ops.transpose(ops.take(phi, self.token_ids, axis=0)))
        if self.mode == "logits":
            return chosen
        log_z = ops.logsumexp(word_logits(f, phi), axis=-1, keepdims=True)
        return chosen - log_z if self.mode == "logprobs" else ops.exp(chosen - log_z)

    def get_config(self):
        config = super().get_config()
        config.update({"token_ids": self.token_ids, "mode": self.mode})
        return config

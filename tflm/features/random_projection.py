"""The random-projection baseline "A p_f": p_f projected by a random matrix with orthonormal rows."""

import keras
import numpy as np
from keras import ops

from tflm.models.output_embeddings import next_word_distribution


def orthonormal_rows(rows, cols, seed=0):
    """A (rows, cols) float32 matrix with orthonormal rows (QR of a Gaussian)."""
    if rows > cols:
        raise ValueError(f"cannot have {rows} orthonormal rows in {cols} dimensions")
    g = np.random.default_rng(seed).standard_normal((cols, rows))
    q, r = np.linalg.qr(g)
    q *= np.sign(np.diag(r))[None, :]
    return q.T.astype(np.float32)


@keras.saving.register_keras_serializable(package="tflm")
class RandomProjection(keras.layers.Layer):
    """``A p_f(s)`` with A (rows, V) orthonormal rows, seeded.

    Call with ``(f (B, d), phi (V, d))``; returns (B, rows).
    """

    def __init__(self, rows, vocabulary_size, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.rows = int(rows)
        self.vocabulary_size = int(vocabulary_size)
        self.seed = int(seed)
        self._a = ops.convert_to_tensor(orthonormal_rows(self.rows, self.vocabulary_size, self.seed))

    def call(self, f, phi):
        return ops.matmul(next_word_distribution(f, phi), ops.transpose(ops.cast(self._a, f.dtype)))

    def get_config(self):
        config = super().get_config()
        config.update({"rows": self.rows, "vocabulary_size": self.vocabulary_size, "seed": self.seed})
        return config

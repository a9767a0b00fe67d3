"""The paper's untied output head: body -> affine f_lin -> separate Phi."""

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="tflm")
class UntiedHead(keras.layers.Layer):
    """`f = f_lin(h)` (d x d, bias) and an output matrix Phi of shape (V, d).

    Row w of `phi` is the paper's column phi_w. With `use_f_lin=False` the
    head is only an untied Phi (f = h).

    Args:
        vocabulary_size: V.
        hidden_dim: d.
        use_f_lin: whether to apply the affine `f_lin` before Phi.
        trainable_phi: False freezes Phi ("fixed Phi" in the paper's code).
        phi_initializer: initializer for Phi when it is not set explicitly.
    """

    def __init__(
        self,
        vocabulary_size,
        hidden_dim,
        use_f_lin=True,
        trainable_phi=True,
        phi_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        # === Config ===
        self.vocabulary_size = int(vocabulary_size)
        self.hidden_dim = int(hidden_dim)
        self.use_f_lin = bool(use_f_lin)
        self.trainable_phi = bool(trainable_phi)
        self.phi_initializer = keras.initializers.get(phi_initializer)
        # === Layers ===
        self.f_lin = (
            keras.layers.Dense(hidden_dim, use_bias=True, name="f_lin", dtype=self.dtype_policy)
            if self.use_f_lin
            else None
        )

    def build(self, input_shape=None):
        if self.f_lin is not None:
            self.f_lin.build((None, None, self.hidden_dim))
        self.phi = self.add_weight(
            shape=(self.vocabulary_size, self.hidden_dim),
            initializer=self.phi_initializer,
            trainable=self.trainable_phi,
            name="phi",
        )
        self.built = True

    def call(self, hidden_states):
        """Features f from the body's final hidden states."""
        return self.f_lin(hidden_states) if self.f_lin is not None else hidden_states

    def set_phi(self, matrix):
        matrix = np.asarray(matrix)
        if matrix.shape != (self.vocabulary_size, self.hidden_dim):
            raise ValueError(
                f"Phi has shape {matrix.shape}, expected (V, d) = "
                f"({self.vocabulary_size}, {self.hidden_dim})"
            )
        if not self.built:
            self.build()
        self.phi.assign(matrix.astype(self.phi.dtype))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "hidden_dim": self.hidden_dim,
                "use_f_lin": self.use_f_lin,
                "trainable_phi": self.trainable_phi,
                "phi_initializer": keras.initializers.serialize(self.phi_initializer),
            }
        )
        return config

"""The paper's untied output head: body -> affine f_lin -> separate Phi (optionally whitened)."""

import keras
import numpy as np
from keras import ops


def inverse_sqrt_gram(phi, eps=1e-6):
    """G^-1/2 for G = Phi Phi^T (paper notation; `phi` is stored (V, d)), in float64.

    Eigenvalues below ``eps * lambda_max`` are floored there, so a rank-
    deficient Phi gives a finite matrix (those directions are then only
    partly whitened). Returns a symmetric (d, d) numpy array.
    """
    phi = np.asarray(phi, dtype=np.float64)
    lam, u = np.linalg.eigh(phi.T @ phi)
    lam = np.maximum(lam, eps * max(float(lam[-1]), np.finfo(np.float64).tiny))
    return (u / np.sqrt(lam)) @ u.T


@keras.saving.register_keras_serializable(package="tflm")
class UntiedHead(keras.layers.Layer):
    """`f = f_lin(h)` (affine, input_dim -> d) and an output matrix Phi of shape (V, d).

    Row w of `phi` is the paper's column phi_w. With `use_f_lin=False` the
    head is only an untied Phi (f = h).

    Whitening (`whiten=True`, frozen Phi only): the network's output is g =
    f_lin(h) and the features are ``f = G^-1/2 g`` with the constant
    G^-1/2 = (Phi Phi^T)^-1/2 stored as the non-trainable weight
    `whitening` (computed once by `refresh_whitening`). The Quad loss
    ``-f.phi_w + 1/2 f^T G f`` then reads, in g,
    ``-g.(G^-1/2 phi_w) + 1/2 ||g||^2``: its Hessian in g is the identity
    instead of G, whose condition number for a real Phi is 1e3-1e5 (one
    large common direction), which first-order optimisers (Adam included:
    its per-coordinate scaling does not rotate) cannot undo. f is a fixed
    invertible linear map of g, so every consumer of f (features, probes,
    logits f.Phi^T) sees the same information and reads the real f: the
    head's output already includes the map.

    Args:
        vocabulary_size: V.
        hidden_dim: d (the dimension of f and of Phi's rows).
        use_f_lin: whether to apply the affine `f_lin` before Phi.
        trainable_phi: False freezes Phi ("fixed Phi" in the paper's code).
        phi_initializer: initializer for Phi when it is not set explicitly.
        input_dim: the body's hidden size (default d); f_lin maps it to d,
            so a small body can be trained against a larger pretrained Phi.
        whiten: apply the constant G^-1/2 after f_lin (needs a frozen Phi).
        whitening_eps: relative eigenvalue floor of G for G^-1/2.
        kernel_initializer: initializer of f_lin's kernel.
    """

    def __init__(
        self,
        vocabulary_size,
        hidden_dim,
        use_f_lin=True,
        trainable_phi=True,
        phi_initializer="glorot_uniform",
        input_dim=None,
        whiten=False,
        whitening_eps=1e-6,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        # === Config ===
        self.vocabulary_size = int(vocabulary_size)
        self.hidden_dim = int(hidden_dim)
        self.use_f_lin = bool(use_f_lin)
        self.trainable_phi = bool(trainable_phi)
        self.phi_initializer = keras.initializers.get(phi_initializer)
        self.input_dim = int(input_dim) if input_dim is not None else self.hidden_dim
        self.whiten = bool(whiten)
        self.whitening_eps = float(whitening_eps)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        if self.whiten and self.trainable_phi:
            raise ValueError("whiten=True needs a frozen Phi (trainable_phi=False): G^-1/2 is a constant")
        if not self.use_f_lin and self.input_dim != self.hidden_dim:
            raise ValueError(f"input_dim {self.input_dim} != hidden_dim {self.hidden_dim} needs use_f_lin=True")
        # === Layers ===
        self.f_lin = (
            keras.layers.Dense(
                hidden_dim, use_bias=True, kernel_initializer=self.kernel_initializer,
                name="f_lin", dtype=self.dtype_policy,
            )
            if self.use_f_lin
            else None
        )

    def build(self, input_shape=None):
        if self.f_lin is not None:
            self.f_lin.build((None, None, self.input_dim))
        self.phi = self.add_weight(
            shape=(self.vocabulary_size, self.hidden_dim),
            initializer=self.phi_initializer,
            trainable=self.trainable_phi,
            name="phi",
        )
        self.whitening = None
        if self.whiten:
            self.whitening = self.add_weight(
                shape=(self.hidden_dim, self.hidden_dim), initializer="identity", trainable=False,
                name="whitening",
            )
        self.built = True

    def call(self, hidden_states):
        """Features f from the body's final hidden states."""
        g = self.f_lin(hidden_states) if self.f_lin is not None else hidden_states
        if self.whitening is None:
            return g
        return ops.matmul(g, ops.cast(self.whitening, g.dtype))

    def refresh_whitening(self):
        """Set `whitening` to G^-1/2 of the current (frozen) Phi; no-op without whitening."""
        if not self.built:
            self.build()
        if self.whitening is not None:
            w = inverse_sqrt_gram(ops.convert_to_numpy(self.phi), self.whitening_eps)
            self.whitening.assign(w.astype(self.whitening.dtype))

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
        self.refresh_whitening()

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "hidden_dim": self.hidden_dim,
                "use_f_lin": self.use_f_lin,
                "trainable_phi": self.trainable_phi,
                "phi_initializer": keras.initializers.serialize(self.phi_initializer),
                "input_dim": self.input_dim,
                "whiten": self.whiten,
                "whitening_eps": self.whitening_eps,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config

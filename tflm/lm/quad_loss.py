"""The paper's Quad objective as a Keras loss layer.

l_quad(f, w) = -f.phi_w + 1/2 ||Phi^T f||^2. Since ||Phi^T f||^2 = f^T (Phi Phi^T) f,
the quadratic term uses the d x d Gram matrix: O(d^2) per position instead
of O(dV) (about 65x less at d=768, V=50257). Padding is masked (the
reference code has no mask in its Quad branch).
"""

import keras
from keras import ops

from tflm.lm.cross_entropy_loss import masked_mean


def gram_matrix(phi):
    """Phi Phi^T in the paper's notation; `phi` is stored (V, d), so phi^T phi."""
    return ops.matmul(ops.transpose(phi), phi)


@keras.saving.register_keras_serializable(package="tflm")
class QuadLoss(keras.layers.Layer):
    """Mean over real positions of ``-f.phi_w + 1/2 f^T G f``.

    Args:
        use_gram: True (default) computes the quadratic term through the Gram
            matrix G = Phi Phi^T; False uses the naive V-dim product (the
            reference's formula, kept for checks and benchmarks).

    Call with ``(features, phi, targets, mask, gram=None)``. Pass a
    precomputed `gram` when Phi is frozen (it is then a constant).
    """

    def __init__(self, use_gram=True, **kwargs):
        super().__init__(**kwargs)
        self.use_gram = bool(use_gram)

    def call(self, features, phi, targets, mask, gram=None):
        phi = ops.cast(phi, features.dtype)
        phi_w = ops.take(phi, ops.cast(targets, "int32"), axis=0)
        linear = ops.sum(features * phi_w, axis=-1)
        if self.use_gram:
            g = gram_matrix(phi) if gram is None else ops.cast(gram, features.dtype)
            quad = ops.sum(ops.matmul(features, g) * features, axis=-1)
        else:
            logits = ops.einsum("btd,vd->btv", features, phi)
            quad = ops.sum(ops.square(logits), axis=-1)
        return masked_mean(0.5 * quad - linear, mask)

    def get_config(self):
        config = super().get_config()
        config.update({"use_gram": self.use_gram})
        return config

"""Exact checks of the LM loss layers (Quad in Gram and naive form, cross-entropy)."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tflm.lm.cross_entropy_loss import CrossEntropyLoss  # noqa: E402
from tflm.lm.quad_loss import QuadLoss, gram_matrix  # noqa: E402

B, T, D, V = 2, 3, 5, 11


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(B, T, D))
    phi = rng.normal(size=(V, D)) / np.sqrt(D)
    targets = rng.integers(0, V, size=(B, T)).astype(np.int32)
    mask = np.array([[1, 1, 0], [1, 0, 0]], dtype=np.float64)
    return f, phi, targets, mask


def numpy_quad(f, phi, targets, mask):
    per = -np.sum(f * phi[targets], -1) + 0.5 * np.sum((f @ phi.T) ** 2, -1)
    return np.sum(per * mask) / np.sum(mask)


def numpy_xent(f, phi, targets, mask):
    logits = f @ phi.T
    m = logits.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[..., 0]
    tgt = np.take_along_axis(logits, targets[..., None], -1)[..., 0]
    return np.sum((lse - tgt) * mask) / np.sum(mask)


def loss_and_grads(layer, f, phi, targets, mask, **kw):
    f_t = tf.Variable(f, dtype=tf.float64)
    phi_t = tf.Variable(phi, dtype=tf.float64)
    with tf.GradientTape() as tape:
        loss = layer(f_t, phi_t, tf.constant(targets), tf.constant(mask), **kw)
    gf, gphi = tape.gradient(loss, [f_t, phi_t])
    return loss.numpy(), tf.convert_to_tensor(gf).numpy(), tf.convert_to_tensor(gphi).numpy()


def assert_rel(a, b, rtol=1e-5):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(np.max(np.abs(b)), 1e-12)
    assert np.max(np.abs(a - b)) <= rtol * scale, (a, b)


def test_quad_gram_equals_naive_and_numpy(problem):
    f, phi, targets, mask = problem
    lg, gfg, gpg = loss_and_grads(QuadLoss(use_gram=True, dtype="float64"), f, phi, targets, mask)
    ln, gfn, gpn = loss_and_grads(QuadLoss(use_gram=False, dtype="float64"), f, phi, targets, mask)
    assert_rel(lg, ln)
    assert_rel(gfg, gfn)
    assert_rel(gpg, gpn)
    assert_rel(lg, numpy_quad(f, phi, targets, mask))
    # Analytic gradient w.r.t. f: (-phi_w + Phi Phi^T f) * mask / n.
    n = mask.sum()
    expected_gf = (-phi[targets] + f @ (phi.T @ phi)) * mask[..., None] / n
    assert_rel(gfg, expected_gf)
    # Padded positions get zero gradient.
    assert np.all(gfg[mask == 0] == 0)


def test_quad_precomputed_gram(problem):
    f, phi, targets, mask = problem
    layer = QuadLoss(dtype="float64")
    gram = gram_matrix(tf.constant(phi))
    assert_rel(gram.numpy(), phi.T @ phi, 1e-12)
    loss = layer(tf.constant(f), tf.constant(phi), tf.constant(targets), tf.constant(mask), gram=gram)
    assert_rel(loss.numpy(), numpy_quad(f, phi, targets, mask))


@pytest.mark.parametrize("use_gram", [True, False])
def test_quad_padding_is_ignored(problem, use_gram):
    f, phi, targets, mask = problem
    layer = QuadLoss(use_gram=use_gram, dtype="float64")
    base = layer(f, phi, targets, mask).numpy()
    rng = np.random.default_rng(1)
    f2, t2 = f.copy(), targets.copy()
    pad = mask == 0
    f2[pad] = rng.normal(size=(pad.sum(), D)) * 100
    t2[pad] = rng.integers(0, V, size=pad.sum())
    assert layer(f2, phi, t2, mask).numpy() == base
    xent = CrossEntropyLoss(dtype="float64")
    assert xent(f2, phi, t2, mask).numpy() == xent(f, phi, targets, mask).numpy()


def test_cross_entropy_equals_numpy(problem):
    f, phi, targets, mask = problem
    layer = CrossEntropyLoss(dtype="float64")
    loss, gf, gphi = loss_and_grads(layer, f, phi, targets, mask)
    assert_rel(loss, numpy_xent(f, phi, targets, mask), 1e-10)
    # Gradient w.r.t. f: (softmax(f Phi^T) Phi - phi_w) * mask / n.
    logits = f @ phi.T
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    assert_rel(gf, (p @ phi - phi[targets]) * mask[..., None] / mask.sum(), 1e-10)


def test_all_masked_is_zero_not_nan(problem):
    f, phi, targets, _ = problem
    zero = np.zeros((B, T))
    assert QuadLoss(dtype="float64")(f, phi, targets, zero).numpy() == 0.0
    assert CrossEntropyLoss(dtype="float64")(f, phi, targets, zero).numpy() == 0.0


@pytest.mark.parametrize(
    "layer",
    [QuadLoss(use_gram=False, name="q"), QuadLoss(name="q2"), CrossEntropyLoss(name="x")],
    ids=["quad-naive", "quad-gram", "xent"],
)
def test_serialization_round_trip(layer, problem):
    cfg = layer.get_config()
    clone = type(layer).from_config(cfg)
    assert clone.get_config() == cfg
    if isinstance(layer, QuadLoss):
        assert clone.use_gram == layer.use_gram
    ser = keras.saving.serialize_keras_object(layer)
    back = keras.saving.deserialize_keras_object(ser)
    assert type(back) is type(layer) and back.get_config() == cfg
    f, phi, targets, mask = problem
    args = [tf.constant(a, tf.float32) for a in (f, phi)] + [tf.constant(targets), tf.constant(mask, tf.float32)]
    np.testing.assert_allclose(back(*args).numpy(), layer(*args).numpy(), rtol=1e-6)

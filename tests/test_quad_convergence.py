"""Quad on an ill-conditioned frozen Phi: the whitened head f = G^-1/2 g converges, the plain one does not.

Synthetic problem: V = 64 words, d = 16, a frozen Phi whose Gram matrix
G = Phi Phi^T has condition number exactly 1e4, and K = 8 one-token contexts c
with next-word distributions p*(.|c). Every (c, w) pair is one training row,
weighted by P(c) p*(w|c), so the training loss *is* the population Quad
objective and its minimum is the analytic Q* = -1/2 E_c (Phi p*_c)^T G^-1 (Phi p*_c).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tflm.lm.causal_lm import CausalLM, make_untied_head  # noqa: E402
from tflm.lm.pretrain import ReplicaAwareAdamW  # noqa: E402
from tflm.models.untied_head import UntiedHead, inverse_sqrt_gram  # noqa: E402

V, D, K = 64, 16, 8
STEPS, LR = 300, 1e-2


def synthetic_problem(seed=0):
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(V, D)))
    r, _ = np.linalg.qr(rng.normal(size=(D, D)))
    phi = (u * np.geomspace(1.0, 100.0, D)) @ r.T  # singular values 1..100: cond(G) = 1e4
    p_star = rng.dirichlet(np.full(V, 0.3), size=K)
    m = phi.T @ p_star.T  # (D, K): Phi p*_c
    q_star = -0.5 * float(np.mean(np.sum(m * np.linalg.solve(phi.T @ phi, m), axis=0)))
    c, w = np.meshgrid(np.arange(K), np.arange(V), indexing="ij")
    x = {"token_ids": c.reshape(-1, 1).astype("int32"), "padding_mask": np.ones((K * V, 1), "int32")}
    weights = (p_star / K).reshape(-1, 1).astype("float32")
    return phi.astype("float32"), x, w.reshape(-1, 1).astype("int32"), weights, q_star


def train_quad(whiten, seed=0):
    """The pretraining recipe (AdamW, warmup + cosine, global clipping 1.0, f_lin at zero), full batch."""
    phi, x, y, weights, q_star = synthetic_problem()
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=V, num_layers=1, num_heads=2, hidden_dim=D, intermediate_dim=32,
        max_sequence_length=4, dropout=0.0,
    )
    head = make_untied_head(V, D, trainable_phi=False, phi=phi, whiten=whiten, kernel_initializer="zeros")
    model = CausalLM(backbone, "quad", head=head)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, STEPS - 10, alpha=0.1, warmup_target=LR, warmup_steps=10)
    model.compile(optimizer=ReplicaAwareAdamW(schedule, weight_decay=0.0, global_clipnorm=1.0), jit_compile=True)
    ds = tf.data.Dataset.from_tensors((x, y, weights)).repeat()
    model.fit(ds, steps_per_epoch=STEPS, epochs=1, verbose=0, shuffle=False)
    q = model.evaluate(x, y, sample_weight=weights, batch_size=K * V, verbose=0, return_dict=True)["loss"]
    return q, q_star, model


def test_synthetic_phi_is_ill_conditioned():
    phi = synthetic_problem()[0].astype(np.float64)
    np.testing.assert_allclose(np.linalg.cond(phi.T @ phi), 1e4, rtol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("whiten", [True, False], ids=["whitened", "plain"])
def test_quad_reaches_analytic_optimum_only_when_whitened(whiten):
    q, q_star, model = train_quad(whiten)
    rel = abs(q - q_star) / abs(q_star)
    if whiten:
        assert rel <= 1e-3, (q, q_star, rel)
        # f (the head's output, what features and probes read) is G^-1/2 g, not g.
        h = model.backbone({"token_ids": np.arange(K)[:, None], "padding_mask": np.ones((K, 1), "int32")})
        g = keras.ops.convert_to_numpy(model.head.f_lin(h))
        np.testing.assert_allclose(keras.ops.convert_to_numpy(model.head(h)),
                                   g @ inverse_sqrt_gram(model.head.phi.numpy()), rtol=1e-4, atol=1e-6)
    else:
        # The same recipe without the fix stalls far from the optimum (the test can fail).
        assert rel > 1e-2, (q, q_star, rel)


def test_inverse_sqrt_gram_whitens_exactly():
    phi = synthetic_problem()[0].astype(np.float64)
    w = inverse_sqrt_gram(phi)
    np.testing.assert_allclose(w, w.T, atol=1e-12)
    np.testing.assert_allclose(w @ (phi.T @ phi) @ w, np.eye(D), atol=1e-8)
    # A rank-deficient Phi: the floor keeps it finite, the null direction is not inverted.
    low = phi.copy()
    low[:, 0] = 0.0
    w_low = inverse_sqrt_gram(low @ np.eye(D), eps=1e-6)
    assert np.all(np.isfinite(w_low))
    lam = np.linalg.eigvalsh(low.T @ low)
    assert np.linalg.norm(w_low, 2) <= 1.0 / np.sqrt(1e-6 * lam[-1]) * (1 + 1e-9)


def test_whitened_head_config_and_features():
    phi = synthetic_problem()[0]
    head = UntiedHead(V, D, trainable_phi=False, whiten=True, input_dim=8, kernel_initializer="zeros",
                      whitening_eps=1e-7, name="untied_head")
    head.build()
    head.set_phi(phi)  # also computes G^-1/2
    kernel = np.random.default_rng(1).normal(size=(8, D)).astype("float32")
    head.f_lin.kernel.assign(kernel)
    cfg = head.get_config()
    assert cfg["whiten"] and cfg["input_dim"] == 8 and cfg["whitening_eps"] == 1e-7
    clone = UntiedHead.from_config(cfg)
    assert clone.whiten and clone.input_dim == 8 and clone.whitening_eps == 1e-7
    h = np.random.default_rng(2).normal(size=(2, 3, 8)).astype("float32")
    want = (h @ kernel) @ inverse_sqrt_gram(phi, 1e-7)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(head(h)), want, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="frozen Phi"):
        UntiedHead(V, D, trainable_phi=True, whiten=True)


@pytest.mark.slow
def test_whitened_training_is_invariant_to_the_scale_of_phi():
    """(f, Phi) -> (s f, Phi / s) leaves Quad's loss unchanged; whitened training does not even see s."""
    phi, x, y, weights, _ = synthetic_problem()
    runs = []
    for scale in (1.0, 1e-3):
        keras.utils.set_random_seed(0)
        backbone = keras_hub.models.GPT2Backbone(vocabulary_size=V, num_layers=1, num_heads=2, hidden_dim=D,
                                                 intermediate_dim=32, max_sequence_length=4, dropout=0.0)
        head = make_untied_head(V, D, trainable_phi=False, phi=phi * scale, whiten=True)
        model = CausalLM(backbone, "quad", head=head)
        model.compile(optimizer=ReplicaAwareAdamW(1e-2, weight_decay=0.0, global_clipnorm=1.0), jit_compile=False)
        hist = model.fit(x, y, sample_weight=weights, batch_size=K * V, epochs=3, verbose=0, shuffle=False)
        f = keras.ops.convert_to_numpy(model(x))
        runs.append((hist.history["loss"], model.head.f_lin.kernel.numpy(), f))
    (loss_a, k_a, f_a), (loss_b, k_b, f_b) = runs
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-4)
    np.testing.assert_allclose(k_a, k_b, atol=1e-4)  # |k| ~ 0.3: float32 rounding only
    # Only f's scale moves. Tolerance relative to f's scale: elements near 0 of a whitened f
    # (|f| ~ 1e2, cond(G) = 1e4) carry float32 rounding of order 1e-4 |f|.
    np.testing.assert_allclose(f_b, f_a * 1e3, rtol=1e-3, atol=2e-4 * np.abs(f_b).max())

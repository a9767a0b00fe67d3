"""Exact float64 checks of the paper's testable theory, through the library's own layers.

Setup: a random Phi stored (V, d) as in tflm (d=6 << V=40), a finite set of
contexts with known next-word distributions p*(.|s), and known context
distributions for the LM (p_L) and the downstream task (p_T). Expected losses
under p* use the library loss layers with every word as a target and the mask
carrying the weight p_L(s) p*(w|s) (masked_mean divides by the mask's sum, 1).
log p_f comes from `WordScores` in "logprobs" mode over the whole vocabulary,
Phi p_f and log Z from `ConditionalMean`.

Construction choice for item 4 (exactly quadratic log Z): no finite vocabulary
has an exactly quadratic log Z on all of R^d, so the vocabulary is a tensor
Gauss-Hermite quadrature of a Gaussian N(mu, Sigma) with the quadrature
log-weights as an extra "bias" embedding coordinate paired with a constant
feature 1 (`tflm.analysis.theory.gaussian_quadrature_vocabulary`). Then
log Z_(theta,1) = theta.mu + 1/2 theta^T Sigma theta up to ~1e-13.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from numpy.testing import assert_allclose  # noqa: E402
from scipy.optimize import minimize  # noqa: E402

from tflm.analysis import theory  # noqa: E402
from tflm.analysis.linear_relation import fit_linear_relation  # noqa: E402
from tflm.analysis.log_partition import (  # noqa: E402
    collect_log_partition,
    embedding_covariance,
    fit_gaussian_log_partition,
    fit_quadratic_log_partition,
)
from tflm.features.conditional_mean import ConditionalMean  # noqa: E402
from tflm.features.word_scores import WordScores  # noqa: E402
from tflm.lm.cross_entropy_loss import CrossEntropyLoss  # noqa: E402
from tflm.lm.quad_loss import QuadLoss  # noqa: E402

D, V, S = 6, 40, 12
TOL = 1e-6  # every identity below holds to this absolute tolerance in float64


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(V, D))
    p_star = rng.dirichlet(np.full(V, 0.5), size=S)  # generic: NOT softmax-realisable (d < V)
    p_lm = rng.dirichlet(np.full(S, 5.0))
    return phi, p_star, p_lm


# --- library wrappers -------------------------------------------------------
def expanded(theta, p_star, weights):
    """(features (S, V, d), targets (S, V), mask (S, V)) for an expectation under weights x p*."""
    theta = np.atleast_2d(theta)
    s = len(theta)
    feats = np.broadcast_to(theta[:, None, :], (s, V, theta.shape[1]))
    targets = np.broadcast_to(np.arange(V, dtype=np.int32), (s, V))
    mask = np.asarray(weights, np.float64)[:, None] * np.atleast_2d(p_star)
    return tf.constant(feats, tf.float64), tf.constant(targets), tf.constant(mask, tf.float64)


def lib_expected_xent(theta, phi, p_star, weights):
    feats, targets, mask = expanded(theta, p_star, weights)
    return float(CrossEntropyLoss(dtype="float64")(feats, tf.constant(phi), targets, mask))


def lib_expected_quad(theta, phi, p_star, weights, use_gram=True):
    feats, targets, mask = expanded(theta, p_star, weights)
    return float(QuadLoss(use_gram=use_gram, dtype="float64")(feats, tf.constant(phi), targets, mask))


def lib_log_probs(theta, phi):
    layer = WordScores(list(range(len(phi))), mode="logprobs", dtype="float64")
    return layer(tf.constant(np.atleast_2d(theta), tf.float64), tf.constant(phi)).numpy()


def lib_conditional_mean(theta, phi):
    return ConditionalMean(dtype="float64")(tf.constant(np.atleast_2d(theta), tf.float64), tf.constant(phi)).numpy()


# --- 1. cross-entropy excess = E_s KL(p* || p_f) -------------------------------
def test_cross_entropy_excess_is_expected_kl(problem):
    phi, p_star, p_lm = problem
    f = np.random.default_rng(1).normal(size=(S, D))
    xent = lib_expected_xent(f, phi, p_star, p_lm)
    excess = xent - p_lm @ theory.entropy(p_star)
    expected_kl = p_lm @ theory.kl(p_star, np.exp(lib_log_probs(f, phi)))
    assert expected_kl > 0.1
    assert_allclose(excess, expected_kl, rtol=0, atol=TOL)
    assert_allclose(theory.softmax_lm_excess_loss(phi, f, p_star, p_lm), expected_kl, rtol=0, atol=TOL)
    assert_allclose(theory.expected_cross_entropy(phi, f, p_star, p_lm), xent, rtol=0, atol=TOL)


# --- 2. softmax optimum moment-matches ---------------------------------------
@pytest.fixture(scope="module")
def softmax_opt(problem):
    phi, p_star, _ = problem
    return theory.softmax_optimum(phi, p_star, tol=1e-12)


def test_softmax_optimum_moment_matches(problem, softmax_opt):
    phi, p_star, p_lm = problem
    theta_star = softmax_opt
    # Phi p_theta* = Phi p*, through the library's ConditionalMean.
    assert_allclose(lib_conditional_mean(theta_star, phi), p_star @ phi, rtol=0, atol=TOL)
    # theta* is a stationary point of the library's expected cross-entropy.
    feats_var = tf.Variable(np.broadcast_to(theta_star[:, None, :], (S, V, D)).copy())
    _, targets, mask = expanded(theta_star, p_star, p_lm)
    with tf.GradientTape() as tape:
        loss = CrossEntropyLoss(dtype="float64")(feats_var, tf.constant(phi), targets, mask)
    grad = tf.reduce_sum(tape.gradient(loss, feats_var), axis=1).numpy()  # d loss / d theta_s
    assert np.max(np.abs(grad)) < TOL
    # p* is not realisable, so theta* leaves a positive KL, and the moment match is non-trivial.
    assert np.all(theory.kl(p_star, np.exp(lib_log_probs(theta_star, phi))) > 1e-2)


def test_softmax_excess_is_kl_from_optimum(problem, softmax_opt):
    phi, p_star, _ = problem
    rng = np.random.default_rng(2)
    one = np.ones(1)
    for s in range(S):
        l_star = lib_expected_xent(softmax_opt[s], phi, p_star[s], one)
        p_opt = np.exp(lib_log_probs(softmax_opt[s], phi))[0]
        for _ in range(3):
            theta = softmax_opt[s] + rng.normal(size=D) * rng.uniform(0.1, 2.0)
            lhs = lib_expected_xent(theta, phi, p_star[s], one) - l_star
            rhs = theory.kl(p_opt, np.exp(lib_log_probs(theta, phi))[0])
            assert rhs > 0
            assert_allclose(lhs, rhs, rtol=0, atol=TOL)


def test_softmax_optimum_recovers_realisable_parameter(problem):
    phi, _, _ = problem
    theta0 = np.random.default_rng(3).normal(size=(4, D))
    p_real = np.exp(lib_log_probs(theta0, phi))
    theta_star = theory.softmax_optimum(phi, p_real, tol=1e-12)
    assert_allclose(theta_star, theta0, rtol=0, atol=TOL)


# --- 3. grad log Z = Phi p_theta (autodiff vs ConditionalMean) ---------------
def test_grad_log_partition_is_conditional_mean(problem):
    phi, _, _ = problem
    theta = tf.Variable(np.random.default_rng(4).normal(size=(S, D)))
    with tf.GradientTape() as tape:
        log_z = ConditionalMean.log_partition(theta, tf.constant(phi))
        total = tf.reduce_sum(log_z)
    grad = tape.gradient(total, theta).numpy()
    mean = lib_conditional_mean(theta.numpy(), phi)
    assert_allclose(grad, mean, rtol=0, atol=TOL)
    assert_allclose(mean, theory.conditional_mean(phi, theta.numpy()), rtol=0, atol=TOL)
    assert_allclose(log_z.numpy(), theory.log_partition(phi, theta.numpy()), rtol=0, atol=TOL)


# --- 4. exactly quadratic log Z  =>  Phi p_f = A f + b -------------------------
def test_quadratic_log_partition_gives_linear_conditional_mean():
    rng = np.random.default_rng(5)
    k = 2
    mu = rng.normal(size=k) * 0.5
    L = np.tril(rng.normal(size=(k, k))) * 0.5 + np.eye(k) * 0.6
    sigma = L @ L.T
    phi, unigram = theory.gaussian_quadrature_vocabulary(mu, sigma, nodes_per_dim=20)
    assert phi.shape == (400, k + 1)
    theta = rng.normal(size=(80, k)) * 0.8
    f = theory.augment_bias(theta)  # features (theta, 1): quadratic on this affine subspace

    # log Z through the library (ConditionalMean.log_partition) is exactly the quadratic.
    _, log_z = collect_log_partition(f, phi)
    quad = theta @ mu + 0.5 * np.einsum("ni,ij,nj->n", theta, sigma, theta)
    assert_allclose(log_z, quad, rtol=0, atol=TOL)

    # The implication: Phi p_f = A f + b in the directions the features vary in.
    phi_p = lib_conditional_mean(f, phi)[:, :k]
    assert_allclose(phi_p, theta @ sigma.T + mu, rtol=0, atol=TOL)

    # The analysis fit recovers A = Sigma, b = mu, c = 0, and its gradient is Phi p_f.
    fit = fit_quadratic_log_partition(theta, log_z)
    assert_allclose(fit.A, sigma, rtol=0, atol=TOL)
    assert_allclose(fit.b, mu, rtol=0, atol=TOL)
    assert abs(fit.c) < TOL and fit.train_r2 > 1 - 1e-12
    assert_allclose(fit.gradient(theta), phi_p, rtol=0, atol=TOL)

    # Gaussian heuristic with unigram (= quadrature) weights is exact here: Cov(phi_w) = Sigma.
    assert_allclose(embedding_covariance(phi[:, :k], unigram), sigma, rtol=0, atol=TOL)
    assert_allclose(unigram, np.exp(lib_log_probs(np.r_[np.zeros(k), 1.0], phi))[0], rtol=0, atol=TOL)
    gauss = fit_gaussian_log_partition(phi[:, :k], theta, log_z, weights=unigram)
    assert_allclose(gauss.b, mu, rtol=0, atol=TOL)
    assert abs(gauss.c) < TOL and gauss.train_r2 > 1 - 1e-12

    # ...and the linear relation Phi p_f ~ A f + b is recovered exactly.
    rel = fit_linear_relation(theta, phi_p)
    assert_allclose(rel.A, sigma, rtol=0, atol=TOL)
    assert_allclose(rel.b, mu, rtol=0, atol=TOL)
    assert rel.relative_error(theta, phi_p) < TOL


# --- 5. Quad optimum and excess ----------------------------------------------
@pytest.mark.parametrize("use_gram", [True, False])
def test_quad_optimum_and_excess(problem, use_gram):
    phi, p_star, _ = problem
    uniform = np.full(S, 1.0 / S)
    phi_t = tf.constant(phi)
    _, targets, mask = expanded(np.zeros((S, D)), p_star, uniform)
    layer = QuadLoss(use_gram=use_gram, dtype="float64")
    theta = tf.Variable(np.zeros((S, D)))

    def loss_fn():
        feats = tf.broadcast_to(theta[:, None, :], (S, V, D))
        return layer(feats, phi_t, targets, mask)

    # Minimise the library's expected Quad loss: it is quadratic, so one Newton step is exact.
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            loss = loss_fn()
        grad = inner.gradient(loss, theta)
    hess = outer.jacobian(grad, theta).numpy().reshape(S * D, S * D)
    theta_star = -np.linalg.solve(hess, grad.numpy().reshape(-1)).reshape(S, D)
    assert_allclose(theta_star, theory.quad_optimum(phi, p_star), rtol=0, atol=TOL)
    theta.assign(theta_star)
    with tf.GradientTape() as tape:
        loss = loss_fn()
    assert np.max(np.abs(tape.gradient(loss, theta).numpy())) < TOL

    # Excess = 1/2 ||Phi^T (theta - theta*)||^2 for arbitrary theta, per context.
    rng = np.random.default_rng(6)
    one = np.ones(1)
    for s in range(S):
        l_star = lib_expected_quad(theta_star[s], phi, p_star[s], one, use_gram)
        for _ in range(3):
            th = rng.normal(size=D) * rng.uniform(0.1, 3.0)
            lhs = lib_expected_quad(th, phi, p_star[s], one, use_gram) - l_star
            assert_allclose(lhs, theory.quad_excess(phi, th, theta_star[s]), rtol=0, atol=TOL)
            assert_allclose(lhs, theory.expected_quad_loss(phi, th, p_star[s])
                            - theory.expected_quad_loss(phi, theta_star[s], p_star[s]), rtol=0, atol=TOL)


# --- 6. main theorem: downstream loss <= tau + sqrt(2 B^2 eps / gamma) --------
def best_bounded_probe_loss(x, q, weights, B, init):
    """min over ||u||_inf <= B and free bias of the expected logistic loss of u.x + c."""
    def fun(params):
        z = x @ params[:-1] + params[-1]
        loss = theory.expected_logistic_loss(z, q, weights)
        # d/dz of q l(z, +1) + (1 - q) l(z, -1) = sigmoid(z) - q
        g = weights * (1.0 / (1.0 + np.exp(-z)) - q)
        return loss, np.r_[x.T @ g, g.sum()]

    bounds = [(-B, B)] * x.shape[1] + [(None, None)]
    res = minimize(fun, np.r_[init, 0.0], jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": 500, "ftol": 1e-15, "gtol": 1e-12})
    return min(float(res.fun), fun(np.r_[init, 0.0])[0])


@pytest.mark.slow
def test_downstream_bound_over_eps_grid():
    rng = np.random.default_rng(7)
    n_ctx, B = 30, 4.0
    phi = rng.normal(size=(V, D))
    theta_true = rng.normal(size=(n_ctx, D)) * 0.7
    p_star = np.exp(lib_log_probs(theta_true, phi))  # realisable: eps = 0 is reachable
    p_lm = rng.dirichlet(np.full(n_ctx, 4.0))
    p_task = rng.dirichlet(np.full(n_ctx, 4.0))
    gamma = theory.distribution_shift_gamma(p_lm, p_task)
    assert 0 < gamma < 1 and np.all(p_lm >= gamma * p_task - 1e-15)

    # A (tau, B)-natural task: labels from a known model P(y=+1|s) = sigmoid(2 v.p*(s)).
    v = rng.uniform(-B, B, size=V)
    q = 1.0 / (1.0 + np.exp(-2.0 * (p_star @ v)))
    tau = theory.expected_logistic_loss(p_star @ v, q, p_task)  # loss of this v on p*
    # The theorem's tau: the best ||u||_inf <= B linear probe (free bias) on p* itself.
    tau_min = best_bounded_probe_loss(p_star, q, p_task, B, v)
    assert tau_min <= tau + 1e-12
    # Same for a v in the row space of Phi: v2 = Phi lam, a linear classifier lam on Phi p_f.
    lam = rng.normal(size=D)
    lam *= B / np.max(np.abs(phi @ lam))
    v2 = phi @ lam
    q2 = 1.0 / (1.0 + np.exp(-2.0 * (p_star @ v2)))
    tau2 = theory.expected_logistic_loss(p_star @ v2, q2, p_task)

    directions = rng.normal(size=(n_ctx, D))
    eps_seen = []
    for delta in np.linspace(0.0, 2.5, 11):
        f = theta_true + delta * directions
        # eps: LM excess cross-entropy under p_L, through the library loss (item 1).
        eps = lib_expected_xent(f, phi, p_star, p_lm) - p_lm @ theory.entropy(p_star)
        p_f = np.exp(lib_log_probs(f, phi))
        assert_allclose(eps, p_lm @ theory.kl(p_star, p_f), rtol=0, atol=TOL)
        eps_seen.append(eps)
        rhs = theory.bound(tau, B, eps, gamma)

        loss_v = theory.expected_logistic_loss(p_f @ v, q, p_task)
        # The proof's chain, each step checked: Lipschitz, Jensen + Pinsker, shift.
        l1 = np.abs(p_f - p_star).sum(-1)
        kl_task = p_task @ theory.kl(p_star, p_f)
        assert loss_v <= tau + B * (p_task @ l1) + 1e-12
        assert p_task @ l1 <= np.sqrt(2.0 * kl_task) + 1e-12
        assert kl_task <= eps / gamma + 1e-12
        assert loss_v <= rhs + 1e-12
        if delta == 0.0:
            assert abs(eps) < TOL and abs(loss_v - tau) < TOL

        # The best bounded linear probe on p_f does at least as well as v.
        best = best_bounded_probe_loss(p_f, q, p_task, B, v)
        assert best <= loss_v + 1e-12 and best <= rhs + 1e-12
        assert best <= theory.bound(tau_min, B, eps, gamma) + 1e-9

        # Row-space version: classifier lam on the library's Phi p_f features.
        phi_p = lib_conditional_mean(f, phi)
        assert_allclose(phi_p @ lam, p_f @ v2, rtol=0, atol=TOL)
        loss_lam = theory.expected_logistic_loss(phi_p @ lam, q2, p_task)
        assert loss_lam <= theory.bound(tau2, B, eps, gamma) + 1e-12

    eps_seen = np.array(eps_seen)
    assert eps_seen[0] < TOL and eps_seen[-1] > 1.0  # the grid spans a real range of eps

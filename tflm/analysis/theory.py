"""Small float64 numpy helpers for the paper's exactly testable theory.

Convention: as everywhere in tflm, ``phi`` is stored (V, d) with row w = phi_w
(the paper writes Phi as d x V). Features ``theta`` / ``f`` are (d,) or (S, d);
next-word distributions ``p`` are (V,) or (S, V). Everything is computed in
float64.

Contents (paper section "Theory you can test exactly"):
- `softmax_lm_excess_loss`, `kl`, `entropy`, `expected_cross_entropy` (item 1);
- `softmax_optimum` (Newton's method; item 2), `log_partition`, `conditional_mean`;
- `quad_optimum`, `quad_excess`, `expected_quad_loss` (item 5);
- `bound`, `distribution_shift_gamma`, `logistic_loss`, `expected_logistic_loss` (item 6);
- `gaussian_quadrature_vocabulary`, `augment_bias`: a vocabulary whose log-partition
  function is exactly quadratic up to quadrature error ~1e-13 (item 4).
"""

import itertools

import numpy as np
from scipy.special import logsumexp

__all__ = [
    "augment_bias", "bound", "conditional_mean", "distribution_shift_gamma", "entropy",
    "expected_cross_entropy", "expected_logistic_loss", "expected_quad_loss",
    "gaussian_quadrature_vocabulary", "kl", "log_partition", "log_softmax", "logistic_loss",
    "quad_excess", "quad_optimum", "softmax", "softmax_lm_excess_loss", "softmax_optimum",
]


def _f64(x):
    return np.asarray(x, dtype=np.float64)


def _weights(weights, n):
    if weights is None:
        return np.full(n, 1.0 / n)
    w = _f64(weights)
    if w.shape != (n,) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be {n} non-negative numbers with a positive sum")
    return w / w.sum()


def log_softmax(logits):
    logits = _f64(logits)
    return logits - logsumexp(logits, axis=-1, keepdims=True)


def softmax(logits):
    return np.exp(log_softmax(logits))


def log_partition(phi, theta):
    """log Z_theta = log sum_w exp(theta . phi_w); theta (d,) or (S, d)."""
    return logsumexp(_f64(theta) @ _f64(phi).T, axis=-1)


def conditional_mean(phi, theta):
    """Phi p_theta = sum_w p_theta(w) phi_w (= grad log Z_theta)."""
    return softmax(_f64(theta) @ _f64(phi).T) @ _f64(phi)


def kl(p, q, axis=-1):
    """KL(p || q) = sum p log(p / q), with 0 log 0 = 0 (inf where q = 0 < p)."""
    p, q = _f64(p), _f64(q)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return np.sum(terms, axis=axis)


def entropy(p, axis=-1):
    p = _f64(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=axis)


def expected_cross_entropy(phi, f, p_star, weights=None):
    """E_{s~weights} E_{w~p*(.|s)} [-log p_f(s)(w)] for f (S, d), p_star (S, V)."""
    f, p_star = np.atleast_2d(_f64(f)), np.atleast_2d(_f64(p_star))
    w = _weights(weights, len(f))
    return float(w @ -np.sum(p_star * log_softmax(f @ _f64(phi).T), axis=-1))


def softmax_lm_excess_loss(phi, f, p_star, weights=None):
    """Cross-entropy excess over the true distribution: E_s[xent(p*, p_f)] - E_s[H(p*)].

    By the paper's item 1 this equals E_s KL(p*(.|s) || p_f(s)).
    """
    p_star = np.atleast_2d(_f64(p_star))
    w = _weights(weights, len(p_star))
    return expected_cross_entropy(phi, f, p_star, w) - float(w @ entropy(p_star))


def softmax_optimum(phi, p_star, tol=1e-13, max_iter=200, theta0=None):
    """argmin_theta -theta . Phi p* + log Z_theta (Newton with backtracking), per context.

    Requires Phi of full row rank d (phi (V, d) of rank d) for a unique optimum.
    Returns theta* (d,) or (S, d); raises RuntimeError if the gradient norm
    does not fall below `tol`.
    """
    phi = _f64(phi)
    p_star = _f64(p_star)
    if p_star.ndim == 2:
        init = [None] * len(p_star) if theta0 is None else np.atleast_2d(theta0)
        return np.stack([softmax_optimum(phi, p, tol, max_iter, t0) for p, t0 in zip(p_star, init)])
    target = phi.T @ p_star
    theta = np.zeros(phi.shape[1]) if theta0 is None else _f64(theta0).copy()

    def objective(t):
        return log_partition(phi, t) - t @ target

    value = objective(theta)
    for _ in range(max_iter):
        p = softmax(phi @ theta)
        mean = phi.T @ p
        grad = mean - target
        if np.linalg.norm(grad) < tol:
            return theta
        centered = phi - mean
        hess = (centered * p[:, None]).T @ centered
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-12:
            cand = theta - t * step
            cand_value = objective(cand)
            if cand_value <= value + 1e-15 * max(1.0, abs(value)):
                break
            t *= 0.5
        theta, value = cand, cand_value
    grad = conditional_mean(phi, theta) - target
    if np.linalg.norm(grad) < 10 * tol:
        return theta
    raise RuntimeError(f"softmax_optimum did not converge: |grad| = {np.linalg.norm(grad):.3g}")


def quad_optimum(phi, p_star):
    """Unique minimiser of E_{w~p*}[l_quad(theta, w)]: (Phi Phi^T)^-1 Phi p*.

    With tflm's (V, d) storage this is (phi^T phi)^-1 phi^T p*; p_star (V,) or (S, V).
    """
    phi = _f64(phi)
    return np.linalg.solve(phi.T @ phi, phi.T @ _f64(p_star).T).T


def expected_quad_loss(phi, theta, p_star):
    """E_{w~p*}[-theta . phi_w] + 1/2 ||Phi^T theta||^2, per context."""
    phi, theta = _f64(phi), _f64(theta)
    logits = theta @ phi.T
    return -np.sum(_f64(p_star) * logits, axis=-1) + 0.5 * np.sum(logits**2, axis=-1)


def quad_excess(phi, theta, theta_star):
    """1/2 ||Phi^T (theta - theta*)||^2 (the Quad excess loss), per row."""
    diff = (_f64(theta) - _f64(theta_star)) @ _f64(phi).T
    return 0.5 * np.sum(diff**2, axis=-1)


def bound(tau, B, eps, gamma):
    """The main theorem's bound tau + sqrt(2 B^2 eps / gamma)."""
    eps = np.maximum(_f64(eps), 0.0)
    return tau + np.sqrt(2.0 * B**2 * eps / gamma)


def distribution_shift_gamma(p_lm, p_task):
    """gamma = min over contexts with p_task(s) > 0 of p_lm(s) / p_task(s)."""
    p_lm, p_task = _f64(p_lm), _f64(p_task)
    p_lm, p_task = p_lm / p_lm.sum(), p_task / p_task.sum()
    support = p_task > 0
    return float(np.min(p_lm[support] / p_task[support]))


def logistic_loss(z, y):
    """log(1 + exp(-y z)) for labels y in {-1, +1}; 1-Lipschitz in z."""
    return np.logaddexp(0.0, -_f64(y) * _f64(z))


def expected_logistic_loss(scores, p_positive, weights=None):
    """E_{s~weights} [ P(y=+1|s) l(z_s, +1) + P(y=-1|s) l(z_s, -1) ] (labels in expectation)."""
    scores, q = _f64(scores), _f64(p_positive)
    w = _weights(weights, len(scores))
    return float(w @ (q * logistic_loss(scores, 1.0) + (1.0 - q) * logistic_loss(scores, -1.0)))


def augment_bias(theta):
    """Append a constant-1 coordinate to features (pairs with a log-weight column of Phi)."""
    theta = _f64(theta)
    return np.concatenate([theta, np.ones(theta.shape[:-1] + (1,))], axis=-1)


def gaussian_quadrature_vocabulary(mean, cov, nodes_per_dim=20):
    """A vocabulary whose log Z is exactly quadratic (to quadrature error ~1e-13).

    No finite vocabulary has an exactly quadratic log Z on all of R^d (log Z is
    asymptotically piecewise linear), but the moment generating function of a
    Gaussian is one: log E_{x~N(mu, Sigma)} exp(theta . x) = theta . mu + 1/2 theta^T Sigma theta.
    Tensor-product Gauss-Hermite quadrature with n nodes per axis is exact for
    polynomials of degree 2n - 1 and, for exp(theta . x), its error is of order
    |theta|^{2n} / (2n)! (about 1e-13 at n = 20, |theta| <= 4, k = 2).

    The words are the quadrature nodes x_w = mu + L z_w (L L^T = Sigma), and the
    quadrature weights enter as an extra "bias" embedding coordinate log w_w,
    paired with a constant feature 1 (`augment_bias`). So for the augmented
    feature (theta, 1): log Z = theta . mu + 1/2 theta^T Sigma theta, and
    Phi p_(theta,1) restricted to the first k coordinates = Sigma theta + mu.

    Returns ``(phi, weights)``: phi (n^k, k + 1) and the quadrature weights
    (the unigram distribution p at theta = 0), under which the weighted
    covariance of the first k embedding coordinates is exactly Sigma.
    """
    mean, cov = _f64(mean), _f64(cov)
    k = mean.shape[0]
    nodes, w = np.polynomial.hermite_e.hermegauss(int(nodes_per_dim))
    w = w / w.sum()
    z = np.array(list(itertools.product(nodes, repeat=k)))
    weights = np.prod(np.array(list(itertools.product(w, repeat=k))), axis=1)
    x = mean + z @ np.linalg.cholesky(cov).T
    return np.concatenate([x, np.log(weights)[:, None]], axis=1), weights

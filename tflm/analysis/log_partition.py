"""Is log Z_f quadratic in f? (paper, theory item 4 and its log-partition figure).

If log Z_theta = 1/2 theta^T A theta + b^T theta + c around the features, then
Phi p_f(s) = grad log Z = A f(s) + b, so f linearly does whatever Phi p_f does.
This module collects (f(s), log Z_{f(s)}) pairs, fits the quadratic by least
squares (A symmetric, parametrised by its upper triangle), evaluates it on
held-out contexts, fits the Gaussian heuristic A ~ Cov(phi_w), and plots fit
vs truth around y = x.

Convention: ``phi`` is (V, d), row w = phi_w (the paper's Phi is d x V).
"""

from dataclasses import dataclass, field

import numpy as np

from tflm.atomic import save_figure

__all__ = [
    "QuadraticLogPartition", "collect_log_partition", "embedding_covariance",
    "evaluate_quadratic_fit", "fit_gaussian_log_partition", "fit_quadratic_log_partition",
    "n_quadratic_params", "plot_log_partition_fit", "quadratic_design", "r_squared",
]


@dataclass
class QuadraticLogPartition:
    """log Z ~ 1/2 f^T A f + b^T f + c. `gradient(f)` = A f + b is the implied Phi p_f."""

    A: np.ndarray
    b: np.ndarray
    c: float
    kind: str = "quadratic"
    train_r2: float = float("nan")
    info: dict = field(default_factory=dict)

    @property
    def n_params(self):
        return n_quadratic_params(self.b.shape[0])

    def predict(self, f):
        f = np.asarray(f, dtype=np.float64)
        return 0.5 * np.einsum("ni,ij,nj->n", f, self.A, f) + f @ self.b + self.c

    def gradient(self, f):
        return np.asarray(f, dtype=np.float64) @ self.A.T + self.b


def n_quadratic_params(d):
    """d(d+1)/2 (symmetric A) + d (b) + 1 (c)."""
    return d * (d + 1) // 2 + d + 1


def collect_log_partition(f, phi, batch_rows=1024, dtype="float64"):
    """(f, log Z_f) for the contexts' features f (N, d) and Phi (V, d).

    log Z is computed by the library's `ConditionalMean.log_partition`, in
    row batches (never more than batch_rows x V logits), in `dtype`
    ("float64" default; "float32" is much faster for V = 50k and d = 768).
    Returns float64 arrays ``(f (N, d), logz (N,))``.
    """
    import tensorflow as tf

    from tflm.features.conditional_mean import ConditionalMean

    f = np.asarray(f)
    if f.ndim != 2:
        raise ValueError(f"f must be (N, d), got shape {f.shape}")
    phi_t = tf.convert_to_tensor(np.asarray(phi), dtype=dtype)
    if phi_t.shape[1] != f.shape[1]:
        raise ValueError(f"f has d={f.shape[1]} but Phi has d={phi_t.shape[1]} (Phi must be (V, d))")
    out = np.empty(len(f), dtype=np.float64)
    for start in range(0, len(f), batch_rows):
        rows = tf.convert_to_tensor(f[start:start + batch_rows], dtype=dtype)
        out[start:start + batch_rows] = np.asarray(ConditionalMean.log_partition(rows, phi_t))
    return f.astype(np.float64), out


def quadratic_design(f):
    """Design matrix (N, d(d+1)/2 + d + 1): [1/2 f_i^2 | f_i f_j (i<j) | f | 1].

    Column order follows `np.triu_indices(d)` for A, so the coefficient of
    column (i, j) is A_ij: 1/2 f^T A f = sum_i A_ii f_i^2 / 2 + sum_{i<j} A_ij f_i f_j.
    """
    f = np.asarray(f, dtype=np.float64)
    n, d = f.shape
    iu, ju = np.triu_indices(d)
    quad = f[:, iu] * f[:, ju] * np.where(iu == ju, 0.5, 1.0)
    return np.concatenate([quad, f, np.ones((n, 1))], axis=1)


def _lstsq(X, y, ridge, penalise):
    """min ||X w - y||^2 + ridge ||w[penalise]||^2 (intercept unpenalised)."""
    if ridge > 0:
        pen = np.zeros((int(penalise.sum()), X.shape[1]))
        pen[np.arange(len(pen)), np.flatnonzero(penalise)] = np.sqrt(ridge)
        X = np.concatenate([X, pen])
        y = np.concatenate([y, np.zeros(len(pen))])
    w, *_ = np.linalg.lstsq(X, y, rcond=None)
    return w


def r_squared(y_true, y_pred):
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    ss_res = np.sum((y_true - y_pred) ** 2)
    ss_tot = np.sum((y_true - y_true.mean()) ** 2)
    if ss_tot == 0:
        return 1.0 if ss_res == 0 else float("-inf")
    return float(1.0 - ss_res / ss_tot)


def fit_quadratic_log_partition(f_train, logz_train, ridge=0.0):
    """Least squares log Z ~ 1/2 f^T A f + b^T f + c, A symmetric.

    Parameters: d(d+1)/2 (upper triangle of A) + d + 1. Raises ValueError when
    there are fewer contexts than parameters (the fit would be underdetermined).
    `ridge` > 0 adds ridge * ||(A_triu, b)||^2 (c is not penalised).
    Note the design is N x d(d+1)/2: at d = 768 that is 295k columns, so
    project f to fewer dimensions first for large models.
    """
    f = np.asarray(f_train, dtype=np.float64)
    y = np.asarray(logz_train, dtype=np.float64).reshape(-1)
    if f.ndim != 2 or len(f) != len(y):
        raise ValueError(f"need f (N, d) and logz (N,), got {f.shape} and {y.shape}")
    d = f.shape[1]
    p = n_quadratic_params(d)
    if len(f) < p:
        raise ValueError(
            f"a quadratic log-partition fit in d={d} has {p} parameters "
            f"(d(d+1)/2 + d + 1) but only {len(f)} contexts were given; "
            f"use at least {p} contexts (more for a meaningful held-out check) or reduce d")
    if ridge < 0:
        raise ValueError("ridge must be >= 0")
    X = quadratic_design(f)
    penalise = np.ones(p, dtype=bool)
    penalise[-1] = False
    w = _lstsq(X, y, float(ridge), penalise)
    iu, ju = np.triu_indices(d)
    A = np.zeros((d, d))
    A[iu, ju] = w[: len(iu)]
    A[ju, iu] = w[: len(iu)]
    fit = QuadraticLogPartition(A=A, b=w[len(iu):len(iu) + d], c=float(w[-1]),
                                info={"ridge": float(ridge), "n_train": len(f)})
    fit.train_r2 = r_squared(y, fit.predict(f))
    return fit


def evaluate_quadratic_fit(fit, f_test, logz_test):
    """Held-out quality: R^2, mean relative error mean |pred - true| / |true|, RMSE."""
    y = np.asarray(logz_test, dtype=np.float64).reshape(-1)
    pred = fit.predict(f_test)
    return {
        "r2": r_squared(y, pred),
        "mean_relative_error": float(np.mean(np.abs(pred - y) / np.maximum(np.abs(y), 1e-12))),
        "rmse": float(np.sqrt(np.mean((pred - y) ** 2))),
        "n": int(len(y)),
    }


def embedding_covariance(phi, weights=None):
    """Covariance of the word embeddings (rows of Phi), uniform or unigram-weighted."""
    phi = np.asarray(phi, dtype=np.float64)
    if weights is None:
        w = np.full(len(phi), 1.0 / len(phi))
    else:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape[0] != len(phi) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"weights must be {len(phi)} non-negative numbers with a positive sum")
        w = w / w.sum()
    mean = w @ phi
    centered = phi - mean
    return (centered * w[:, None]).T @ centered


def fit_gaussian_log_partition(phi, f_train, logz_train, weights=None):
    """Gaussian heuristic: A = Cov(phi_w) (uniform or `weights`), b and c by least squares.

    If phi_w ~ N(mu, Sigma) then sum_w exp(theta . phi_w) ~ V exp(theta . mu + 1/2 theta^T Sigma theta).
    """
    f = np.asarray(f_train, dtype=np.float64)
    y = np.asarray(logz_train, dtype=np.float64).reshape(-1)
    A = embedding_covariance(phi, weights)
    if A.shape[0] != f.shape[1]:
        raise ValueError(f"f has d={f.shape[1]} but Phi has d={A.shape[0]} (Phi must be (V, d))")
    if len(f) < f.shape[1] + 1:
        raise ValueError(f"the Gaussian heuristic fits b and c ({f.shape[1] + 1} parameters) "
                         f"but only {len(f)} contexts were given")
    resid = y - 0.5 * np.einsum("ni,ij,nj->n", f, A, f)
    w, *_ = np.linalg.lstsq(np.concatenate([f, np.ones((len(f), 1))], axis=1), resid, rcond=None)
    fit = QuadraticLogPartition(A=A, b=w[:-1], c=float(w[-1]), kind="gaussian",
                                info={"weights": "uniform" if weights is None else "given",
                                      "n_train": len(f)})
    fit.train_r2 = r_squared(y, fit.predict(f))
    return fit


def plot_log_partition_fit(path, logz_true, predictions, title=None, dpi=120):
    """PNG of fitted vs true log Z with the y = x line; R^2 of each fit in the legend.

    `predictions`: an array (one fit, labelled "quadratic fit") or a dict
    label -> predicted log Z. Uses matplotlib's Agg canvas (no display needed).
    Returns `path`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    y = np.asarray(logz_true, dtype=np.float64).reshape(-1)
    if not isinstance(predictions, dict):
        predictions = {"quadratic fit": predictions}
    fig = Figure(figsize=(6, 6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    lo, hi = float(y.min()), float(y.max())
    markers = ["o", "s", "^", "x", "D"]
    for i, (label, pred) in enumerate(predictions.items()):
        pred = np.asarray(pred, dtype=np.float64).reshape(-1)
        if pred.shape != y.shape:
            raise ValueError(f"prediction {label!r} has {pred.shape[0]} values, expected {y.shape[0]}")
        lo, hi = min(lo, float(pred.min())), max(hi, float(pred.max()))
        ax.scatter(y, pred, s=10, alpha=0.6, marker=markers[i % len(markers)],
                   label=f"{label} (R$^2$ = {r_squared(y, pred):.4f})")
    pad = 0.05 * max(hi - lo, 1e-9)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="y = x")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel(r"true log $Z_{f(s)}$")
    ax.set_ylabel(r"fitted log $Z_{f(s)}$")
    ax.set_title(title or "Log-partition function vs its quadratic fit (held-out contexts)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    save_figure(fig, path, dpi=dpi)
    return path

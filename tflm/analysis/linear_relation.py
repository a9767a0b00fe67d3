"""Is Phi p_f an affine function of f? Fit Phi p_f ~ A f + b (paper, theory item 4).

If log Z is quadratic in f then Phi p_f = A f + b exactly. `linear_relation_report`
fits the map on a train part, reports the held-out relative error
||pred - Phi p_f|| / ||Phi p_f|| (mean over rows), and returns the fitted map
and A f + b for every row, so callers can compare probe accuracy of f,
Phi p_f and A f + b.

Arrays are row-major: f (N, d_in), target (N, d_out); A is (d_out, d_in) as in
the paper's ``A f + b``, so ``predict(f) = f @ A.T + b``.
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["LinearRelation", "fit_linear_relation", "linear_relation_report", "relative_error"]


def relative_error(pred, target):
    """Per-row ||pred - target|| / ||target|| (float64)."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    return np.linalg.norm(pred - target, axis=-1) / np.maximum(np.linalg.norm(target, axis=-1), 1e-300)


@dataclass
class LinearRelation:
    A: np.ndarray
    b: np.ndarray
    ridge: float = 0.0

    def predict(self, f):
        return np.asarray(f, dtype=np.float64) @ self.A.T + self.b

    def relative_error(self, f, target):
        """Mean over rows of ||A f + b - target|| / ||target||."""
        return float(np.mean(relative_error(self.predict(f), target)))


def fit_linear_relation(f_train, target_train, ridge=0.0):
    """Least squares (ridge > 0: ridge * ||A||_F^2, b unpenalised) for target ~ A f + b."""
    f = np.asarray(f_train, dtype=np.float64)
    t = np.asarray(target_train, dtype=np.float64)
    if f.ndim != 2 or t.ndim != 2 or len(f) != len(t):
        raise ValueError(f"need f (N, d_in) and target (N, d_out), got {f.shape} and {t.shape}")
    if ridge < 0:
        raise ValueError("ridge must be >= 0")
    n, d = f.shape
    if ridge == 0 and n < d + 1:
        raise ValueError(f"an affine map from d={d} has {d + 1} parameters per output but only "
                         f"{n} rows were given; pass ridge > 0 or more rows")
    if ridge > 0:
        # Centre to leave b unpenalised, then solve (F^T F + ridge I) A^T = F^T T.
        fm, tm = f.mean(0), t.mean(0)
        fc, tc = f - fm, t - tm
        At = np.linalg.solve(fc.T @ fc + ridge * np.eye(d), fc.T @ tc)
        return LinearRelation(A=At.T, b=tm - fm @ At, ridge=float(ridge))
    W, *_ = np.linalg.lstsq(np.concatenate([f, np.ones((n, 1))], axis=1), t, rcond=None)
    return LinearRelation(A=W[:-1].T, b=W[-1], ridge=0.0)


def linear_relation_report(f, phi_p, train_fraction=0.8, ridge=0.0, seed=0, train_idx=None):
    """Fit Phi p_f ~ A f + b on a random train part and evaluate on the rest.

    Returns a dict: ``relation`` (the `LinearRelation`), ``train_relative_error``,
    ``test_relative_error`` (means of ||pred - Phi p_f|| / ||Phi p_f||),
    ``train_idx``, ``test_idx`` and ``predicted`` (A f + b for ALL rows, in input order).
    Pass `train_idx` to use a fixed split (e.g. the task's train split).
    """
    f = np.asarray(f, dtype=np.float64)
    phi_p = np.asarray(phi_p, dtype=np.float64)
    if len(f) != len(phi_p):
        raise ValueError(f"f has {len(f)} rows but phi_p has {len(phi_p)}")
    n = len(f)
    if train_idx is None:
        if not 0 < train_fraction < 1:
            raise ValueError("train_fraction must be in (0, 1)")
        perm = np.random.default_rng(seed).permutation(n)
        n_train = int(round(train_fraction * n))
        if n_train < 1 or n_train >= n:
            raise ValueError(f"train_fraction={train_fraction} leaves an empty part of {n} rows")
        train_idx, test_idx = np.sort(perm[:n_train]), np.sort(perm[n_train:])
    else:
        train_idx = np.asarray(train_idx)
        if train_idx.dtype == bool:
            train_idx = np.flatnonzero(train_idx)
        test_idx = np.setdiff1d(np.arange(n), train_idx)
        if len(test_idx) == 0:
            raise ValueError("train_idx covers every row; nothing is left to evaluate on")
    rel = fit_linear_relation(f[train_idx], phi_p[train_idx], ridge=ridge)
    return {
        "relation": rel,
        "train_relative_error": rel.relative_error(f[train_idx], phi_p[train_idx]),
        "test_relative_error": rel.relative_error(f[test_idx], phi_p[test_idx]),
        "train_idx": train_idx,
        "test_idx": test_idx,
        "predicted": rel.predict(f),
    }

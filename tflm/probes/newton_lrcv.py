"""The paper's LRCV protocol solved by batched Newton in TensorFlow (``probe_backend="tf"``).

`LogisticProbe` with the scikit-learn backend fits every (fold, C[, class])
problem with liblinear, one after the other. This module solves the SAME
problems, all folds (and all one-vs-rest classes) at once, with a damped
Newton method, warm-started along the C path (small C to large C), so the
work is a few large matrix products that TensorFlow runs on all CPU cores or
on a GPU. What is kept from the reference, exactly:

- the folds (given by the caller: ``StratifiedKFold(5)`` on the k-class
  labels), the C grid, the per-fold held-out accuracy (binary accuracy of
  each one-vs-rest classifier), the selection rule (largest summed fold
  accuracy, the smallest C on ties; one C per class for one-vs-rest), and
  the refit on all training rows with the chosen C;
- the objective. liblinear minimises ``C * sum_i logloss_i + ||w||^2 / 2``
  where the intercept is the weight of an appended constant feature of value
  ``intercept_scaling = 1``, so it IS penalised (`penalize_intercept=True`).
  'sag' / 'lbfgs' (the sst5 exception) do not penalise the intercept
  (`penalize_intercept=False`); their multinomial model penalises every
  class row of W, as here.

What differs: the optimiser. The problems are strictly convex, so both
reach the same minimiser; liblinear stops at ``||g|| <= tol * max(min(#pos,
#neg), 1) / n * ||g(0)||`` (tol=1e-4) or after ``max_iter`` Newton-CG
iterations, this solver at ``||g|| <= tol * ||g(0)||`` with a much smaller
default tol (1e-7), so it is the closer one to the exact optimum. Problems
that stop at `max_iter` (or where the line search can no longer decrease the
objective in float64 before reaching tol) are counted, not hidden.

Numerics: gradients, objectives, line search and the Cholesky solve are
float64. The data curvature ``X^T diag(s) X`` (the cost: n d^2 per problem)
is accumulated in `hessian_dtype` (float32 by default) after scaling every
column to unit root-mean-square (Newton is affine invariant, so the scaling
changes nothing but the rounding), and it is reused across steps and across
Cs until a step shrinks the gradient norm by less than `RENEW_RATE`; only
``C * curvature + penalty`` is refactored per C. An inexact or stale
curvature only slows the (line-searched, float64-gradient) iteration, it
never moves its fixed point. Where it slows it too much (nearly collinear
features, e.g. Phi p_f of an untrained LM: steps with a just-computed
float32 curvature that still shrink the gradient by less than RENEW_RATE,
`SLOW_EXACT` times in a row) that problem's curvature becomes float64; on
such features this took one probe from 3,223 Newton steps and 3,094
curvatures (28 of 51 problems at max_iter) to 115 and 24, all converged.
"""

import numpy as np
import tensorflow as tf

TOL = 1e-7
MAX_ITER = 100
LINE_SEARCH = 2.0 ** -np.arange(16)  # step sizes tried at once: 1, 1/2, ..., 2^-15
ARMIJO = 1e-4
HESSIAN_BYTES = 256 * 2 ** 20  # problems per Hessian batch: (problems, n, d) stays under this
RENEW_RATE = 0.5  # recompute the curvature when a step shrinks ||grad|| by less than this factor
SLOW_EXACT = 2  # slow steps in a row, despite a fresh curvature, before a problem's curvature turns float64


class _Problems:
    """Many L2-regularised logistic problems on one design matrix, as TensorFlow functions.

    Binary problems: weights (B, D), targets Y (B, n) in {-1, +1}.
    Multinomial problems: weights (B, K, D) flattened to (B, K*D), targets
    one-hot (B, n, K). Masks M (B, n) in {0, 1} pick each problem's rows.
    """

    def __init__(self, X, reg, hessian_dtype, multinomial, n_classes):
        self.X = tf.constant(X, tf.float64)
        self.Xh = tf.constant(X, hessian_dtype)
        self.reg = tf.constant(reg, tf.float64)  # (D,)
        self.hdt = hessian_dtype
        self.multinomial = multinomial
        self.K = int(n_classes)
        n, D = X.shape
        per_problem = n * D * hessian_dtype.size * (self.K if multinomial else 1)
        self.chunk = max(1, int(HESSIAN_BYTES // max(per_problem, 1)))
        fns = _traced(multinomial, self.K, hessian_dtype)
        self.gradient = lambda *a: fns["gradient"](self.X, self.Xh, self.reg, *a)
        self.curvature = lambda *a: fns["curvature"](self.X, self.Xh, self.reg, *a)
        self.factor = lambda *a: fns["factor"](self.X, self.Xh, self.reg, *a)
        self.step = lambda *a: fns["step"](self.X, self.Xh, self.reg, *a)
        self._args = (X, reg, multinomial, n_classes)
        self._exact = self if hessian_dtype == tf.float64 else None

    @property
    def exact(self):
        """The same problems with a float64 curvature (built on first use)."""
        if self._exact is None:
            X, reg, multinomial, n_classes = self._args
            self._exact = _Problems(X, reg, tf.float64, multinomial, n_classes)
        return self._exact

    @classmethod
    def _bound(cls, X, Xh, reg, multinomial, K):
        """A view for one traced call: the tensors arrive as function arguments."""
        self = cls.__new__(cls)
        self.X, self.Xh, self.reg, self.hdt = X, Xh, reg, Xh.dtype
        self.multinomial, self.K = multinomial, K
        return self

    # --- objective pieces ------------------------------------------------
    def _scores(self, W):
        if self.multinomial:
            B = tf.shape(W)[0]
            return tf.einsum("bkd,nd->bnk", tf.reshape(W, [B, self.K, -1]), self.X)
        return tf.matmul(W, self.X, transpose_b=True)  # (B, n)

    def _reg_full(self):
        return tf.tile(self.reg, [self.K]) if self.multinomial else self.reg

    def _loss_rows(self, Y, Z):
        if self.multinomial:  # (B, n)
            return tf.reduce_logsumexp(Z, axis=-1) - tf.reduce_sum(Y * Z, axis=-1)
        return tf.nn.softplus(-Y * Z)

    def _objective(self, Y, M, C, W, Z):
        reg = self._reg_full()
        return 0.5 * tf.reduce_sum(reg * W * W, axis=-1) + C * tf.reduce_sum(M * self._loss_rows(Y, Z), axis=-1)

    def _grad(self, Y, M, C, W, Z):
        B = tf.shape(W)[0]
        if self.multinomial:
            R = (tf.nn.softmax(Z, axis=-1) - Y) * M[:, :, None]  # (B, n, K)
            data = tf.reshape(tf.einsum("bnk,nd->bkd", R, self.X), [B, -1])
        else:
            data = tf.matmul(-M * Y * tf.sigmoid(-Y * Z), self.X)
        return self._reg_full() * W + C[:, None] * data

    def _gradient(self, Y, M, C, W):
        Z = self._scores(W)
        return self._grad(Y, M, C, W, Z), self._objective(Y, M, C, W, Z)

    # --- curvature and one damped (quasi-)Newton step ------------------------------------
    def _curvature(self, M, W):
        """(B, P, P) float64 Hessian of the data term for C = 1 (X^T diag(s) X, class blocks)."""
        Z = self._scores(W)
        if self.multinomial:
            Pr = tf.nn.softmax(Z, axis=-1)
            Pm = Pr * M[:, :, None]
            rows = []
            for a in range(self.K):
                cols = []
                for b in range(self.K):
                    w = Pm[:, :, a] * ((1.0 if a == b else 0.0) - Pr[:, :, b])  # (B, n)
                    Xw = self.Xh[None] * tf.cast(w, self.hdt)[:, :, None]
                    cols.append(tf.cast(tf.matmul(Xw, self.Xh[None], transpose_a=True), tf.float64))
                rows.append(tf.concat(cols, axis=2))
            return tf.concat(rows, axis=1)
        s = M * tf.sigmoid(Z) * tf.sigmoid(-Z)  # sigma(yz)(1 - sigma(yz)) does not depend on y
        Xs = self.Xh[None] * tf.cast(tf.sqrt(s), self.hdt)[:, :, None]
        return tf.cast(tf.matmul(Xs, Xs, transpose_a=True), tf.float64)

    def _factor(self, A, C):
        """Cholesky factor of C * A + diag(penalty), always finite.

        The multinomial objective is flat along "the same shift of every
        intercept" when the intercept is not penalised, and a curvature
        rounded in float32 can be slightly indefinite there. A ridge of the
        curvature's rounding size keeps the factorisation defined (a
        quasi-Newton step: the fixed point does not move); where that still
        fails a larger ridge is used, and at last the diagonal (a scaled
        gradient step).
        """
        H = C[:, None, None] * A + tf.linalg.diag(tf.broadcast_to(self._reg_full(), tf.shape(A)[:2]))
        d = tf.linalg.diag_part(H)
        scale = tf.reduce_max(d, axis=1)[:, None, None]
        eye = tf.eye(tf.shape(H)[1], batch_shape=tf.shape(H)[:1], dtype=tf.float64)
        ridge = 1e-12 if self.hdt == tf.float64 else 1e-6

        def finite(L):
            return tf.reduce_all(tf.math.is_finite(L), axis=[1, 2])[:, None, None]

        L = tf.linalg.cholesky(H + ridge * scale * eye)
        L = tf.where(finite(L), L, tf.linalg.cholesky(H + 1e-3 * scale * eye))
        return tf.where(finite(L), L, tf.linalg.diag(tf.sqrt(tf.maximum(d, 1e-300))))

    def _step(self, Y, M, C, W, L):
        """Direction -H^-1 g from the factor L, then the largest Armijo step among LINE_SEARCH."""
        Z = self._scores(W)
        f = self._objective(Y, M, C, W, Z)
        g = self._grad(Y, M, C, W, Z)
        p = -tf.linalg.cholesky_solve(L, g[:, :, None])[:, :, 0]
        gp = tf.reduce_sum(g * p, axis=1)
        bad = tf.logical_or(tf.logical_not(tf.math.is_finite(gp)), gp >= 0.0)
        p = tf.where(bad[:, None], -g / tf.reduce_sum(L * L, axis=2), p)  # fallback: Jacobi-scaled gradient
        gp = tf.reduce_sum(g * p, axis=1)
        ts = tf.constant(LINE_SEARCH, tf.float64)
        Wt = W[None] + ts[:, None, None] * p[None]  # (T, B, P)
        Zp = self._scores(p)
        Zt = Z[None] + tf.reshape(ts, [-1] + [1] * len(Z.shape)) * Zp[None]
        reg = self._reg_full()
        ft = 0.5 * tf.reduce_sum(reg * Wt * Wt, axis=-1) + C[None] * tf.reduce_sum(
            M[None] * self._loss_rows(Y[None], Zt), axis=-1)  # (T, B)
        ok = ft <= f[None] + ARMIJO * ts[:, None] * gp[None]
        first = tf.argmax(tf.cast(ok, tf.int32), axis=0)
        t = tf.where(tf.reduce_any(ok, axis=0), tf.gather(ts, first), tf.zeros_like(f))
        return W + t[:, None] * p, t


_TRACED = {}


def _traced(multinomial, K, hessian_dtype):
    """tf.functions of one problem family, traced once per process (shapes are dynamic)."""
    key = (bool(multinomial), int(K) if multinomial else 0, hessian_dtype.name)
    if key not in _TRACED:
        mat = tf.TensorSpec([None, None], tf.float64)
        vec = tf.TensorSpec([None], tf.float64)
        cube = tf.TensorSpec([None, None, None], tf.float64)
        data = [mat, tf.TensorSpec([None, None], hessian_dtype), vec]  # X, Xh, reg
        Y = cube if multinomial else mat

        def bound(X, Xh, reg):
            return _Problems._bound(X, Xh, reg, multinomial, K)

        fns = {
            "gradient": (lambda X, Xh, reg, Y, M, C, W: bound(X, Xh, reg)._gradient(Y, M, C, W),
                         data + [Y, mat, vec, mat]),
            "curvature": (lambda X, Xh, reg, M, W: bound(X, Xh, reg)._curvature(M, W), data + [mat, mat]),
            "factor": (lambda X, Xh, reg, A, C: bound(X, Xh, reg)._factor(A, C), data + [cube, vec]),
            "step": (lambda X, Xh, reg, Y, M, C, W, L: bound(X, Xh, reg)._step(Y, M, C, W, L),
                     data + [Y, mat, vec, mat, cube]),
        }
        _TRACED[key] = {k: tf.function(f, input_signature=sig) for k, (f, sig) in fns.items()}
    return _TRACED[key]


def _chunks(idx, size):
    return [idx[s:s + size] for s in range(0, len(idx), size)]


def _solve(problems, Y, M, C, W, A, tol, max_iter, g0_norm, renew_all, exact=None):
    """Damped Newton on every problem until ||g|| <= tol * g0_norm.

    The curvature A (data Hessian at C = 1, the expensive part) is reused
    across steps and across Cs, and recomputed at the current W only when a
    step reduced the gradient norm by less than RENEW_RATE (or at the start
    when `renew_all`). A problem whose gradient norm still shrinks by less
    than RENEW_RATE over SLOW_EXACT steps in a row, each taken with a
    curvature computed at its own W, is limited by the rounding of a float32
    curvature (ill-conditioned features): it switches to a float64 curvature
    (`exact[i]` becomes True) for the rest of the path. W (array), A (list of
    per-problem tensors, None when unknown) and `exact` (bool array) are
    updated in place. Returns (iterations, curvature evaluations, status)
    per problem.
    """
    B = W.shape[0]
    exact = np.zeros(B, bool) if exact is None else exact
    slow = np.zeros(B, np.int64)  # consecutive slow steps taken with a just-computed curvature
    used_fresh = np.zeros(B, bool)  # the last step used a curvature computed at its W
    n_iter = np.zeros(B, np.int64)
    n_curv = np.zeros(B, np.int64)
    status = np.full(B, "max_iter", dtype=object)
    L = [None] * B  # Cholesky factors as TensorFlow tensors (no host copies)
    stale = np.ones(B, bool)  # L not factored for the current (A, C)
    fresh = np.zeros(B, bool)  # A was evaluated at the current W
    prev = np.full(B, 0.0 if renew_all else np.inf)
    active = np.arange(B)
    for it in range(max_iter + 1):
        g, _ = problems.gradient(Y[active], M[active], C[active], W[active])
        gn = np.linalg.norm(g.numpy(), axis=1)
        done = gn <= tol * g0_norm[active]
        status[active[done]] = "converged"
        active, gn = active[~done], gn[~done]
        if not len(active) or it == max_iter:
            break
        unknown = np.array([A[i] is None for i in active], bool)
        is_slow = gn > RENEW_RATE * prev[active]
        slow[active] = np.where(is_slow & used_fresh[active], slow[active] + 1, 0)
        to_exact = active[(slow[active] >= SLOW_EXACT) & ~exact[active]]
        exact[to_exact] = True
        renew = active[(is_slow & ~fresh[active]) | unknown | np.isin(active, to_exact)]
        prev[active] = gn
        for solver, group in ((problems, renew[~exact[renew]]), (problems.exact, renew[exact[renew]])):
            for idx in _chunks(group, solver.chunk):
                Ai = solver.curvature(M[idx], W[idx])
                for j, i in enumerate(idx):
                    A[i] = Ai[j]
                n_curv[idx] += 1
                fresh[idx] = True
        used_fresh[active] = fresh[active]
        stale[renew] = True
        refactor = active[stale[active]]
        for solver, group in ((problems, refactor[~exact[refactor]]), (problems.exact, refactor[exact[refactor]])):
            for idx in _chunks(group, solver.chunk):
                Li = solver.factor(tf.stack([A[i] for i in idx]), C[idx])
                for j, i in enumerate(idx):
                    L[i] = Li[j]
                stale[idx] = False
        stalled = []
        for idx in _chunks(active, problems.chunk):
            W_new, t = problems.step(Y[idx], M[idx], C[idx], W[idx], tf.stack([L[i] for i in idx]))
            W[idx] = W_new.numpy()
            t = t.numpy()
            stuck = idx[t == 0.0]
            fresh[idx[t > 0.0]] = False
            stalled.append(stuck[fresh[stuck]])  # no decrease even with fresh curvature: float64 limit
            prev[stuck[~fresh[stuck]]] = 0.0  # retry with fresh curvature
        n_iter[active] += 1
        stalled = np.concatenate(stalled)
        status[stalled] = "line_search"
        active = np.setdiff1d(active, stalled)
        if not len(active):
            break
    return n_iter, n_curv, status


def _column_scale(X):
    rms = np.sqrt(np.mean(X * X, axis=0))
    return np.where(rms > 0, 1.0 / np.where(rms > 0, rms, 1.0), 1.0)


def newton_lrcv(X, y, folds, Cs, multinomial=False, penalize_intercept=True, tol=TOL, max_iter=MAX_ITER,
                hessian_dtype="float32"):
    """LRCV (see module doc) for all folds / classes at once.

    Args:
        X: (n, d) float features; y: (n,) labels (>= 2 classes).
        folds: list of (train_index, test_index) pairs.
        Cs: the C grid (increasing order is the warm-start order, any order works).
        multinomial: one multinomial model (k rows) instead of binary /
            one-vs-rest.
        penalize_intercept: liblinear's rule (True) or sag / lbfgs' (False).
        tol, max_iter: stop at ||grad|| <= tol * ||grad at w=0||, or after
            max_iter Newton steps per C.
        hessian_dtype: "float32" or "float64".

    Returns:
        dict: classes, mode ("binary" / "ovr" / "multinomial"), coef (k, d)
        or (1, d), intercept, C (float, or per class for one-vs-rest),
        cv_accuracy (mean held-out accuracy per C; per class for
        one-vs-rest), n_iter (total Newton steps), n_hessians (curvature
        evaluations, the costly part), n_float64_curvature (problems that
        switched to a float64 curvature), n_problems,
        n_not_converged, status counts.
    """
    X = np.asarray(X, np.float64)
    y = np.asarray(y).reshape(-1)
    classes = np.unique(y)
    k = len(classes)
    n, d = X.shape
    Cs = np.asarray(Cs, np.float64)
    order = np.argsort(Cs, kind="stable")
    if k < 2:
        raise ValueError(f"training labels hold a single class ({classes.tolist()}); need >= 2")
    multinomial = bool(multinomial and k > 2)  # two classes: one binomial model either way
    mode = "multinomial" if multinomial else ("binary" if k == 2 else "ovr")
    # Column-scaled design with the constant intercept feature (liblinear's intercept_scaling=1).
    Xa = np.concatenate([X, np.ones((n, 1))], axis=1)
    scale = _column_scale(Xa)
    Xs = Xa * scale
    reg = scale ** 2  # w = scale * v:  ||w||^2 / 2 -> sum_j scale_j^2 v_j^2 / 2
    if not penalize_intercept:
        reg[-1] = 0.0
    F = len(folds)
    fold_mask = np.zeros((F + 1, n))
    for i, (tr, _) in enumerate(folds):
        fold_mask[i, tr] = 1.0
    fold_mask[F] = 1.0  # the refit on all rows
    Y = np.where(y[None, :] == classes[:, None], 1.0, -1.0)  # (k, n) one-vs-rest targets
    if mode == "binary":
        Y = Y[1:]  # the positive class is classes[1]
    K = Y.shape[0]
    problems = _Problems(Xs, reg, tf.as_dtype(hessian_dtype), multinomial, k)

    def targets(rows, classes_of):
        if multinomial:
            return np.repeat((Y.T > 0).astype(np.float64)[None], len(rows), axis=0)
        return Y[classes_of]

    # Problems of the CV path: every fold x (class for ovr / binary, one for multinomial).
    if multinomial:
        fold_of, class_of = np.arange(F), np.zeros(F, np.int64)
        P = k * (d + 1)
    else:
        fold_of, class_of = np.repeat(np.arange(F), K), np.tile(np.arange(K), F)
        P = d + 1
    Yp = targets(fold_of, class_of)
    Mp = fold_mask[fold_of]
    W = np.zeros((len(fold_of), P))
    ones = np.ones(len(fold_of))

    def g0_norms(Yq, Mq):
        g, _ = problems.gradient(Yq, Mq, np.ones(len(Mq)), np.zeros((len(Mq), P)))
        return np.linalg.norm(g.numpy(), axis=1)  # ||grad at 0|| for C = 1; scales with C

    g0_unit = g0_norms(Yp, Mp)
    coefs = np.zeros((len(Cs),) + W.shape)
    A = [None] * len(W)
    exact = np.zeros(len(W), bool)
    n_iter_total, n_curv_total, statuses = 0, 0, []
    for i, j in enumerate(order):
        it, nc, st = _solve(problems, Yp, Mp, Cs[j] * ones, W, A, tol, max_iter, Cs[j] * g0_unit,
                            renew_all=i == 0, exact=exact)
        coefs[j] = W  # _solve updates W in place; the copy keeps this C's solution
        n_iter_total += int(it.sum())
        n_curv_total += int(nc.sum())
        statuses.extend(st.tolist())

    # Held-out accuracy per (C, fold[, class]).
    scores = np.zeros((len(Cs), F, 1 if multinomial else K))
    for i, (_, te) in enumerate(folds):
        sel = fold_of == i
        Wc = coefs[:, sel]  # (n_cs, K or 1, P)
        if multinomial:
            Z = np.einsum("ckd,nd->cnk", Wc[:, 0].reshape(len(Cs), k, d + 1), Xs[te])
            scores[:, i, 0] = np.mean(classes[np.argmax(Z, axis=2)] == y[te][None], axis=1)
        else:
            Z = np.einsum("ckd,nd->ckn", Wc, Xs[te])
            scores[:, i, :] = np.mean((Z > 0) == (Y[:, te] > 0)[None], axis=2)
    best = np.argmax(scores.sum(axis=1), axis=0)  # (classes,): first maximum = smallest C on ties

    # Refit on all rows, warm-started at the fold mean of the chosen C.
    if multinomial:
        refit_class = np.zeros(1, np.int64)
        W0 = coefs[best[0]].mean(axis=0)[None]
    else:
        refit_class = np.arange(K)
        W0 = np.stack([coefs[best[c]][class_of == c].mean(axis=0) for c in range(K)])
    Cr = Cs[best]
    Yr = targets(refit_class, refit_class)
    Mr = np.repeat(fold_mask[F:], len(refit_class), axis=0)
    Wr = W0
    exact_refit = np.zeros(len(Wr), bool)
    it, nc, st = _solve(problems, Yr, Mr, Cr, Wr, [None] * len(Wr), tol, max_iter,
                        Cr * g0_norms(Yr, Mr), renew_all=True, exact=exact_refit)
    n_iter_total += int(it.sum())
    n_curv_total += int(nc.sum())
    statuses.extend(st.tolist())

    Wr = Wr.reshape(len(refit_class) if not multinomial else k, d + 1) * scale
    cv_acc = scores.mean(axis=1)  # (n_cs, classes)
    statuses = np.asarray(statuses)
    return {
        "classes": classes,
        "mode": mode,
        "coef": Wr[:, :d],
        "intercept": Wr[:, d],
        "C": float(Cr[0]) if mode != "ovr" else [float(c) for c in Cr],
        "cv_accuracy": cv_acc[:, 0].tolist() if mode != "ovr" else cv_acc.T.tolist(),
        "n_iter": n_iter_total,
        "n_hessians": n_curv_total,
        "n_float64_curvature": int(exact.sum() + exact_refit.sum()),
        "n_problems": int(len(statuses)),
        "n_not_converged": int(np.sum(statuses != "converged")),
        "status": {str(s): int(np.sum(statuses == s)) for s in np.unique(statuses)},
    }

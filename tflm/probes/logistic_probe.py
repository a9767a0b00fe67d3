"""The paper's linear probe: cross-validated logistic regression (scikit-learn).

Protocol of the reference code (PAPER_NOTES "Linear probe protocol"):

- ``LogisticRegressionCV(fit_intercept=True, cv=5, solver='liblinear',
  max_iter=200, random_state=0, dual=(n_samples < n_features))``;
- ``Cs = np.logspace(-6, 3, 10)`` when ``n_train < 10000``, else
  ``np.logspace(-3, 2, 6)``; ``n_samples`` / ``n_train`` are the rows of the
  training matrix;
- no feature scaling; the metric is the test accuracy of the model refit on
  the whole training set with the chosen C (train accuracy is kept too);
- exception: sst5 fits phi_p / subset / class / posneg with ``solver='sag'``,
  multinomial (`Task.probe_solver`);
- cr / mpqa: mean test accuracy over 10 seeded random 90/10 splits
  (`random_split_probe`).

One-vs-rest, as in scikit-learn 0.23 (which the paper ran)
-----------------------------------------------------------
In 0.23, ``LogisticRegressionCV(solver='liblinear')`` on k > 2 classes
(``multi_class='auto'`` resolves to 'ovr' for liblinear) did, in one fit:

1. ``folds = StratifiedKFold(5).split(X, y)`` on the ORIGINAL k-class labels
   (no shuffling, so ``random_state`` does not touch the folds);
2. for every class c, on every fold and every C, a binary liblinear fit of
   "c against the rest" (targets +1 / -1), scored by the BINARY accuracy of
   that classifier on the held-out fold;
3. for every class separately, the C with the largest summed fold accuracy
   (first one, i.e. the smallest C, on ties), then a refit of that class's
   binary classifier on all rows;
4. ``predict`` = argmax over classes of the per-class decision functions.

scikit-learn >= 1.8 refuses liblinear for k > 2, so `LogisticProbe` does
exactly the steps above by hand: it draws the stratified folds once from the
k-class labels and fits one binary ``LogisticRegressionCV`` per class with
those folds (``cv=folds``) and the same settings. Each class reports its own
C. Remaining differences from the paper's run: (a) liblinear / sag numerics
of the installed scikit-learn (convergence within ``max_iter=200`` is often
not reached; the warnings are counted, see below); (b) ``predict_proba`` is
not provided (0.23 normalised the per-class sigmoids; accuracy does not use
it); (c) sst5's exception requests ``dual=(n < d)`` in the reference, which
'sag' never supported (0.23 raised for ``dual=True``); tflm uses
``dual=False`` for every solver but liblinear, so nothing changes where the
reference ran; (d) a BINARY task given ``multi_class='multinomial'`` with a
non-liblinear solver is fitted as binomial logistic regression by current
scikit-learn; 0.23's two-row multinomial is the same model with C doubled
(only a hypothetical binary task with a solver exception is affected).

Liblinear penalises the intercept (it is a constant feature of value
``intercept_scaling=1``); 'sag' does not. Both are kept as in the paper.

Convergence warnings of scikit-learn are silenced and counted
(``n_convergence_warnings`` in every result).

Backends
--------
``backend="tf"`` (the default) solves the same problems (folds, C grid,
selection, refit, one-vs-rest, liblinear's penalised intercept or sag's
unpenalised one, multinomial) all at once by batched Newton in TensorFlow
(`tflm.probes.newton_lrcv`); it converges further than liblinear's
``max_iter=200`` / ``tol=1e-4`` stop, and counts the (fold, C[, class])
problems it leaves unconverged in ``n_convergence_warnings``.
``backend="sklearn"`` is the exact reference above. ``bench/probe.py``
measures both on the same features.
"""

import inspect
import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from tflm.probes import newton_lrcv as _newton

CV_FOLDS = 5
MAX_ITER = 200
RANDOM_STATE = 0
LARGE_TRAIN = 10_000
BACKENDS = ("tf", "sklearn")
# Largest multinomial Newton system (k (d + 1) unknowns) the "tf" backend takes on. On SmolLM2's sst5
# phi_p (k (d + 1) = 2,885) a Cholesky per Newton step on an ill-conditioned problem ran for over 20
# minutes on this 2-core machine where sklearn's sag takes minutes: larger multinomial fits use sklearn.
MAX_NEWTON_MULTINOMIAL_DIM = 1024


def paper_Cs(n_train):
    """The reference's C grid: 10^-6..10^3 (10 values) if n_train < 10,000, else 10^-3..10^2 (6)."""
    return np.logspace(-6, 3, 10) if int(n_train) < LARGE_TRAIN else np.logspace(-3, 2, 6)


def paper_dual(n_samples, n_features, solver="liblinear"):
    """``dual = (n_samples < n_features)`` for liblinear; False for other solvers (no dual form)."""
    return bool(solver == "liblinear" and int(n_samples) < int(n_features))


def _extra_sklearn_kwargs():
    """Explicit values for parameters that newer scikit-learn warns about when left default."""
    from sklearn.linear_model import LogisticRegressionCV

    params = inspect.signature(LogisticRegressionCV.__init__).parameters
    extra = {}
    if "l1_ratios" in params and params["l1_ratios"].default == "warn":
        extra["l1_ratios"] = (0.0,)  # pure L2, as penalty='l2' (the default) in 0.23
    if "scoring" in params and params["scoring"].default == "warn":
        extra["scoring"] = None  # accuracy, the 0.23 default
    if "use_legacy_attributes" in params:
        extra["use_legacy_attributes"] = False
    return extra


def make_logistic_cv(n_train, n_features, solver="liblinear", cv=CV_FOLDS, Cs=None, dual=None,
                     max_iter=MAX_ITER, random_state=RANDOM_STATE, tol=1e-4):
    """The reference's unfitted ``LogisticRegressionCV`` for an (n_train, n_features) problem.

    `Cs` / `dual` default to `paper_Cs` / `paper_dual`. `cv` is an int or a
    list of (train, test) index pairs.
    """
    from sklearn.linear_model import LogisticRegressionCV

    if dual is None:
        dual = paper_dual(n_train, n_features, solver)
    if dual and solver != "liblinear":
        raise ValueError(f"solver {solver!r} has no dual formulation (dual=True needs liblinear)")
    Cs = paper_Cs(n_train) if Cs is None else np.asarray(Cs, dtype=np.float64)
    return LogisticRegressionCV(
        Cs=Cs, fit_intercept=True, cv=cv, dual=bool(dual), solver=solver, tol=tol,
        max_iter=max_iter, random_state=random_state, **_extra_sklearn_kwargs(),
    )


class _CountConvergence:
    """Context manager: silence sklearn ConvergenceWarnings, count them, re-emit the rest."""

    def __enter__(self):
        from sklearn.exceptions import ConvergenceWarning

        self._category = ConvergenceWarning
        self._ctx = warnings.catch_warnings(record=True)
        self._log = self._ctx.__enter__()
        warnings.simplefilter("always", ConvergenceWarning)
        self.count = 0
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        for w in self._log:
            if issubclass(w.category, self._category):
                self.count += 1
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return False


def _fitted_C(est):
    return float(np.ravel(est.C_)[0])


def _cv_accuracy(est):
    """Mean held-out accuracy per C (n_cs,), for legacy and new sklearn attributes."""
    scores = est.scores_
    if isinstance(scores, dict):
        scores = next(iter(scores.values()))
    scores = np.asarray(scores, dtype=np.float64)
    return scores.mean(axis=0).reshape(-1).tolist()


def _check_xy(X, y, what):
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2:
        raise ValueError(f"{what} features must be a 2-D array (n, d), got shape {X.shape}")
    if y.ndim != 1:
        y = y.reshape(-1)
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"{what}: {X.shape[0]} feature rows but {y.shape[0]} labels")
    if X.shape[0] == 0:
        raise ValueError(f"{what} set is empty")
    return X, y


class LogisticProbe(ClassifierMixin, BaseEstimator):
    """The paper's logistic-regression probe, with explicit one-vs-rest for k > 2.

    A scikit-learn estimator (``clone``, ``get_params``, ``score`` work).

    Args:
        solver: "liblinear" (paper default) or another scikit-learn solver
            ("sag" for the sst5 exception).
        multi_class: "auto" (liblinear -> one-vs-rest, others ->
            multinomial, as 0.23's 'auto'), "ovr" or "multinomial".
        cv, max_iter, random_state, tol: as the reference (5, 200, 0, 1e-4).
        Cs, dual: None for the paper's size rules (`paper_Cs`, `paper_dual`).
        backend: "tf" (batched Newton, `tflm.probes.newton_lrcv`) or
            "sklearn" (the reference, fit by fit).
        newton_tol, newton_max_iter, hessian_dtype: the "tf" backend's stop
            rule (``||grad|| <= newton_tol * ||grad(0)||``), step limit per C,
            and Hessian precision. max_iter / tol / dual / random_state are
            the sklearn backend's.

    Fitted attributes: ``classes_``, ``coef_`` (k, d) or (1, d) for binary,
    ``intercept_``, ``C_`` (float, or list per class for one-vs-rest),
    ``Cs_``, ``mode_`` ("binary" / "ovr" / "multinomial"), ``estimators_``
    (sklearn backend: the fitted ``LogisticRegressionCV``s, one per class for
    one-vs-rest; tf backend: empty), ``cv_accuracy_``, ``dual_`` (tf: None),
    ``n_convergence_warnings_``, ``convergence_`` (tf: problems, Newton
    steps, stop reasons), ``fit_seconds_``.

    ``predict``: binary -> ``classes_[1]`` where ``X @ coef_[0] +
    intercept_[0] > 0``; otherwise ``classes_[argmax(X @ coef_.T +
    intercept_)]``. This is scikit-learn's rule, so (coef_, intercept_)
    reproduce the predictions.
    """

    def __init__(self, solver="liblinear", multi_class="auto", cv=CV_FOLDS, max_iter=MAX_ITER,
                 random_state=RANDOM_STATE, tol=1e-4, Cs=None, dual=None, backend="tf",
                 newton_tol=_newton.TOL, newton_max_iter=_newton.MAX_ITER, hessian_dtype="float32"):
        self.solver = solver
        self.multi_class = multi_class
        self.cv = cv
        self.max_iter = max_iter
        self.random_state = random_state
        self.tol = tol
        self.Cs = Cs
        self.dual = dual
        self.backend = backend
        self.newton_tol = newton_tol
        self.newton_max_iter = newton_max_iter
        self.hessian_dtype = hessian_dtype

    def _check_params(self):
        if self.multi_class not in ("auto", "ovr", "multinomial"):
            raise ValueError(f"multi_class must be 'auto', 'ovr' or 'multinomial', got {self.multi_class!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.hessian_dtype not in ("float32", "float64"):
            raise ValueError(f"hessian_dtype must be 'float32' or 'float64', got {self.hessian_dtype!r}")

    def _mode(self, k):
        if k == 2:
            return "binary"
        if self.multi_class == "ovr" or (self.multi_class == "auto" and self.solver == "liblinear"):
            return "ovr"
        if self.solver == "liblinear":
            raise ValueError("liblinear cannot fit a multinomial model; use multi_class='ovr'")
        return "multinomial"

    def make_estimator(self, n_train, n_features, cv=None):
        """The unfitted ``LogisticRegressionCV`` this probe fits (per class for one-vs-rest)."""
        return make_logistic_cv(
            n_train, n_features, solver=self.solver, cv=self.cv if cv is None else cv, Cs=self.Cs,
            dual=self.dual, max_iter=self.max_iter, random_state=self.random_state, tol=self.tol,
        )

    def fit(self, X, y):
        from sklearn.model_selection import StratifiedKFold

        self._check_params()
        X, y = _check_xy(X, y, "training")
        # One float64 C-ordered copy, shared by every per-class fit.
        X = np.ascontiguousarray(X, dtype=np.float64)
        if not np.all(np.isfinite(X)):
            raise ValueError("training features contain NaN or inf")
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"training labels hold a single class ({classes.tolist()}); need >= 2")
        n, d = X.shape
        mode = self._mode(len(classes))
        # Folds stratified on the original labels, unshuffled (0.23's check_cv(5, y, classifier=True)).
        folds = self.cv
        if isinstance(self.cv, (int, np.integer)):
            folds = list(StratifiedKFold(int(self.cv)).split(X, y))
        t0 = time.time()
        self.backend_used_ = self._backend_for(mode, len(classes), d)
        if self.backend_used_ == "tf":
            self._fit_newton(X, y, folds, mode)
        else:
            self._fit_sklearn(X, y, folds, mode)
        self.fit_seconds_ = time.time() - t0
        self.classes_ = classes
        self.mode_ = mode
        self.n_features_in_ = d
        return self

    def _backend_for(self, mode, k, d):
        """The backend this fit uses: the multinomial Newton system has k (d + 1) unknowns per
        problem, and past `MAX_NEWTON_MULTINOMIAL_DIM` its dense Hessian (a Cholesky per step) is
        slower than sklearn's sag; such fits run on sklearn, and `summary()` says so."""
        if self.backend == "tf" and mode == "multinomial" and k * (d + 1) > MAX_NEWTON_MULTINOMIAL_DIM:
            return "sklearn"
        return self.backend

    def _fit_newton(self, X, y, folds, mode):
        if self.dual and self.solver != "liblinear":
            raise ValueError(f"solver {self.solver!r} has no dual formulation (dual=True needs liblinear)")
        Cs = paper_Cs(X.shape[0]) if self.Cs is None else np.asarray(self.Cs, dtype=np.float64)
        res = _newton.newton_lrcv(
            X, y, folds, Cs, multinomial=mode == "multinomial",
            penalize_intercept=self.solver == "liblinear", tol=self.newton_tol,
            max_iter=self.newton_max_iter, hessian_dtype=self.hessian_dtype,
        )
        self.estimators_ = []
        self.coef_ = res["coef"]
        self.intercept_ = res["intercept"]
        self.C_ = res["C"]
        self.Cs_ = Cs
        self.cv_accuracy_ = res["cv_accuracy"]
        self.dual_ = None
        self.n_convergence_warnings_ = res["n_not_converged"]
        self.convergence_ = {k: res[k] for k in ("n_problems", "n_iter", "n_hessians", "n_not_converged", "status")}

    def _fit_sklearn(self, X, y, folds, mode):
        n, d = X.shape
        with _CountConvergence() as counter:
            if mode == "ovr":
                estimators = []
                for c in np.unique(y):
                    est = self.make_estimator(n, d, cv=folds)
                    est.fit(X, (y == c).astype(np.int64))
                    estimators.append(est)
                coef = np.concatenate([e.coef_ for e in estimators], axis=0)
                intercept = np.concatenate([np.ravel(e.intercept_) for e in estimators])
                C = [_fitted_C(e) for e in estimators]
                cv_acc = [_cv_accuracy(e) for e in estimators]
            else:
                est = self.make_estimator(n, d, cv=folds)
                est.fit(X, y)
                estimators = [est]
                coef = np.asarray(est.coef_, dtype=np.float64)
                intercept = np.ravel(est.intercept_).astype(np.float64)
                C = _fitted_C(est)
                cv_acc = _cv_accuracy(est)
        self.estimators_ = estimators
        self.coef_ = np.asarray(coef, dtype=np.float64)
        self.intercept_ = np.asarray(intercept, dtype=np.float64)
        self.C_ = C
        self.Cs_ = np.asarray(estimators[0].Cs_, dtype=np.float64)
        self.cv_accuracy_ = cv_acc
        self.dual_ = bool(estimators[0].dual)
        self.n_convergence_warnings_ = counter.count
        self.convergence_ = {"n_problems": None, "n_not_converged": counter.count}

    def _check_fitted(self):
        if not hasattr(self, "coef_"):
            raise RuntimeError("LogisticProbe is not fitted; call fit(X, y) first")

    def summary(self):
        """JSON-friendly facts of the fit (chosen C, CV accuracies, convergence, time)."""
        self._check_fitted()
        return {
            "C": self.C_,
            "Cs": self.Cs_.tolist(),
            "cv_accuracy": self.cv_accuracy_,
            "n_features": int(self.n_features_in_),
            "n_classes": int(len(self.classes_)),
            "classes": self.classes_.tolist(),
            "solver": self.solver,
            "backend": self.backend_used_,
            "multi_class": self.mode_,
            "dual": self.dual_,
            "n_convergence_warnings": int(self.n_convergence_warnings_),
            "convergence": self.convergence_,
            "fit_seconds": round(self.fit_seconds_, 3),
        }

    def decision_function(self, X):
        """(n,) for binary, (n, k) otherwise."""
        self._check_fitted()
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected features of shape (n, {self.n_features_in_}), got {X.shape}")
        scores = X @ self.coef_.T + self.intercept_
        return scores[:, 0] if self.mode_ == "binary" else scores

    def predict(self, X):
        scores = self.decision_function(X)
        if self.mode_ == "binary":
            return self.classes_[(scores > 0).astype(np.int64)]
        return self.classes_[np.argmax(scores, axis=1)]

    def score(self, X, y):
        X, y = _check_xy(X, y, "evaluation")
        return float(np.mean(self.predict(X) == y))


def logistic_probe(X_train, y_train, X_test=None, y_test=None, **probe_kwargs):
    """Fit the paper's probe on train, evaluate on test; a JSON-friendly dict (arrays aside).

    Args:
        X_train, y_train: (n, d) features and (n,) integer labels.
        X_test, y_test: optional test set.
        **probe_kwargs: `LogisticProbe` settings, e.g. a task's solver
            settings (``task.probe_solver(feature)``: sst5's sag /
            multinomial exception) and ``backend``.

    Returns:
        dict with train_accuracy, test_accuracy (None without a test set),
        C (float; list per class for one-vs-rest), Cs, cv_accuracy (mean
        held-out accuracy per C; per class for one-vs-rest), n_train,
        n_test, n_features, n_classes, classes, solver, backend, multi_class
        ("binary" / "ovr" / "multinomial"), dual, coef ((k, d); (1, d) for
        binary) and intercept ((k,); (1,) for binary) as numpy arrays,
        test_predictions, n_convergence_warnings, convergence, fit_seconds.
    """
    X_train, y_train = _check_xy(X_train, y_train, "training")
    if (X_test is None) != (y_test is None):
        raise ValueError("pass both X_test and y_test, or neither")
    if X_test is not None:
        X_test, y_test = _check_xy(X_test, y_test, "test")
        if X_test.shape[1] != X_train.shape[1]:
            raise ValueError(f"test features have {X_test.shape[1]} columns, train {X_train.shape[1]}")
    probe = LogisticProbe(**probe_kwargs).fit(X_train, y_train)
    result = {
        "train_accuracy": probe.score(X_train, y_train),
        "test_accuracy": None,
        "n_train": int(X_train.shape[0]),
        "n_test": 0,
        **probe.summary(),
        "coef": probe.coef_,
        "intercept": probe.intercept_,
        "test_predictions": None,
    }
    if X_test is not None:
        pred = probe.predict(X_test)
        result.update(test_accuracy=float(np.mean(pred == y_test)), n_test=int(X_test.shape[0]),
                      test_predictions=pred)
    return result

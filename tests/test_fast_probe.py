"""The fast paper probe (batched Newton in TensorFlow) against the scikit-learn reference."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.model_selection import StratifiedKFold, cross_val_score

from tflm.probes import LogisticProbe, logistic_probe
from tflm.probes.newton_lrcv import newton_lrcv

# The reference run to a tight optimum, so coefficients can be compared (the protocol's
# tol=1e-4 / max_iter=200 stop liblinear early; predictions are compared at the protocol's settings).
TIGHT = dict(tol=1e-10, max_iter=100_000)


def _data(n, k, d=8, seed=0, std=4.0, scale=True):
    X, y = make_blobs(n, centers=k, n_features=d, random_state=seed, cluster_std=std)
    if scale:  # unequal column scales, like LM features
        X = X * np.geomspace(0.05, 20.0, d)
    return X, y


def _close(a, b, rel=1e-4):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    assert np.max(np.abs(a - b)) <= rel * max(np.max(np.abs(b)), 1e-12)


@pytest.mark.parametrize("k", [2, 4])
def test_liblinear_objective_one_vs_rest_and_binary(k):
    """Same folds, Cs, selected C per class, coefficients and predictions as liblinear."""
    X, y = _data(260, k, seed=k)
    Xtr, ytr, Xte, yte = X[:200], y[:200], X[200:], y[200:]
    fast = LogisticProbe(backend="tf").fit(Xtr, ytr)
    ref = LogisticProbe(backend="sklearn", **TIGHT).fit(Xtr, ytr)
    assert fast.mode_ == ref.mode_ == ("binary" if k == 2 else "ovr")
    assert fast.C_ == ref.C_  # one C per class for one-vs-rest
    np.testing.assert_allclose(fast.cv_accuracy_, ref.cv_accuracy_, atol=1e-12)
    _close(fast.coef_, ref.coef_)
    _close(fast.intercept_, ref.intercept_)  # penalised like liblinear's constant feature
    protocol = LogisticProbe(backend="sklearn").fit(Xtr, ytr)
    assert fast.score(Xte, yte) == protocol.score(Xte, yte)
    assert fast.n_convergence_warnings_ == 0
    assert fast.convergence_["status"] == {"converged": fast.convergence_["n_problems"]}
    n_classifiers = 1 if k == 2 else k
    assert fast.convergence_["n_problems"] == (5 * 10 + 1) * n_classifiers  # folds x Cs + refit


def test_dual_shape_same_minimiser():
    """n < d: the reference uses liblinear's dual solver; the minimiser is the same."""
    X, y = _data(60, 2, d=90, seed=3, std=8.0)
    fast = LogisticProbe(backend="tf").fit(X, y)
    ref = LogisticProbe(backend="sklearn", **TIGHT).fit(X, y)
    assert ref.dual_ is True and fast.C_ == ref.C_
    _close(fast.coef_, ref.coef_, rel=1e-3)  # liblinear's dual CD stops on a duality-gap rule


@pytest.mark.slow  # the lbfgs reference needs ~1,000 iterations per fit
def test_multinomial_unpenalised_intercept_matches_sklearn():
    """sst5's exception: multinomial, intercept not penalised (sag / lbfgs objective)."""
    X, y = _data(240, 3, seed=1, std=5.0, scale=False)  # lbfgs, the reference, is slow on bad scales
    fast = LogisticProbe(solver="sag", multi_class="multinomial", backend="tf").fit(X, y)
    ref = LogisticProbe(solver="lbfgs", multi_class="multinomial", backend="sklearn", **TIGHT).fit(X, y)
    assert fast.mode_ == ref.mode_ == "multinomial"
    assert fast.C_ == ref.C_
    np.testing.assert_allclose(fast.cv_accuracy_, ref.cv_accuracy_, atol=1e-12)
    _close(fast.coef_, ref.coef_, rel=1e-4)
    # The intercepts are defined up to a common shift (not penalised): compare centred.
    _close(fast.intercept_ - fast.intercept_.mean(), ref.intercept_ - ref.intercept_.mean(), rel=1e-4)
    np.testing.assert_array_equal(fast.predict(X), ref.predict(X))


@pytest.mark.slow  # the lbfgs reference at tol 1e-10
def test_binary_unpenalised_intercept():
    X, y = _data(200, 2, seed=5, scale=False)
    X[:, 0] += 30.0  # an intercept far from 0 shows whether it is penalised
    fast = LogisticProbe(solver="lbfgs", backend="tf").fit(X, y)
    ref = LogisticProbe(solver="lbfgs", backend="sklearn", **TIGHT).fit(X, y)
    assert fast.C_ == ref.C_
    _close(fast.intercept_, ref.intercept_, rel=1e-4)
    lib = LogisticProbe(backend="tf").fit(X, y)
    assert abs(lib.intercept_[0] - fast.intercept_[0]) > 1e-3  # liblinear's rule differs


@pytest.mark.parametrize("multinomial", [False, True])
def test_float64_hessian_same_solution(multinomial):
    X, y = _data(150, 3, seed=2)  # badly scaled columns: the float32 curvature is inexact
    folds = list(StratifiedKFold(5).split(X, y))
    Cs = np.logspace(-3, 2, 4)
    # The multinomial optimum is flatter: a tighter stop so both runs sit within 1e-6 of it.
    kw = dict(multinomial=multinomial, penalize_intercept=not multinomial, tol=1e-10 if multinomial else 1e-7)
    a = newton_lrcv(X, y, folds, Cs, hessian_dtype="float32", **kw)
    b = newton_lrcv(X, y, folds, Cs, hessian_dtype="float64", **kw)
    assert a["n_not_converged"] == b["n_not_converged"] == 0
    assert a["C"] == b["C"]
    _close(a["coef"], b["coef"], rel=1e-6)


def test_estimator_api_clone_params_and_cross_val():
    probe = LogisticProbe(solver="sag", multi_class="multinomial", Cs=[0.1, 1.0], backend="tf")
    copy = clone(probe)
    assert copy.get_params() == probe.get_params()
    assert copy.get_params()["backend"] == "tf" and copy.get_params()["Cs"] == [0.1, 1.0]
    assert clone(probe.set_params(backend="sklearn")).backend == "sklearn"
    X, y = _data(150, 2, seed=4, std=2.0)
    scores = cross_val_score(LogisticProbe(Cs=[0.01, 1.0]), X, y, cv=3)
    assert scores.shape == (3,) and np.all(scores > 0.8)


def test_convergence_is_counted_and_errors():
    X, y = _data(120, 3, seed=6, std=6.0)
    r = logistic_probe(X, y, backend="tf", newton_max_iter=1)
    assert r["n_convergence_warnings"] > 0 and r["convergence"]["status"].get("max_iter", 0) > 0
    assert r["backend"] == "tf"
    with pytest.raises(ValueError, match="backend"):
        LogisticProbe(backend="torch").fit(X, y)
    with pytest.raises(ValueError, match="hessian_dtype"):
        LogisticProbe(hessian_dtype="int8").fit(X, y)
    with pytest.raises(ValueError, match="single class"):
        newton_lrcv(X, np.zeros(len(X)), [(np.arange(60), np.arange(60, 120))], [1.0])


def test_large_multinomial_fits_run_on_sklearn_and_say_so(monkeypatch):
    """Past MAX_NEWTON_MULTINOMIAL_DIM unknowns the tf backend hands a multinomial fit to sklearn."""
    import importlib

    lp = importlib.import_module("tflm.probes.logistic_probe")

    X, y = make_blobs(n_samples=90, centers=3, n_features=4, random_state=0)
    kw = dict(solver="sag", multi_class="multinomial", Cs=[0.1, 1.0], max_iter=500)
    small = LogisticProbe(backend="tf", **kw).fit(X, y)
    assert small.summary()["backend"] == "tf"  # 3 x (4 + 1) = 15 unknowns
    monkeypatch.setattr(lp, "MAX_NEWTON_MULTINOMIAL_DIM", 14)
    large = LogisticProbe(backend="tf", **kw).fit(X, y)
    reference = LogisticProbe(backend="sklearn", **kw).fit(X, y)
    assert large.summary()["backend"] == "sklearn"
    np.testing.assert_array_equal(large.coef_, reference.coef_)
    ovr = LogisticProbe(backend="tf", Cs=[0.1, 1.0]).fit(X, y)  # one-vs-rest stays on Newton
    assert ovr.summary()["backend"] == "tf"

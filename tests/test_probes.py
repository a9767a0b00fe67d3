"""Tests for tflm.probes: the paper's logistic probe, the streaming softmax probe, zero-shot."""

import json
import warnings

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from tflm.probes import (
    LogisticProbe,
    NextWordDistribution,
    SoftmaxProbe,
    class_token_map,
    l2_for_C,
    logistic_probe,
    make_logistic_cv,
    paper_Cs,
    paper_dual,
    random_split_probe,
    sklearn_C,
    softmax_probe,
    zero_shot_predict,
    zero_shot_probe,
    zero_shot_scores,
)
from tflm.tasks import get_task, random_splits


def _blobs(n, k, d=6, std=3.0, seed=0):
    X, y = make_blobs(n, centers=k, n_features=d, random_state=seed, cluster_std=std)
    return X, y


def _softmax_rows(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _p_problem(n, n_test, k, d=8, V=64, seed=0):
    """Synthetic f, Phi and labels that are a noisy linear function of p = softmax(f Phi^T)."""
    rng = np.random.default_rng(seed)
    phi = rng.normal(size=(V, d)).astype("float32")
    f = (rng.normal(size=(n + n_test, d)) * 1.5).astype("float32")
    p = _softmax_rows(f.astype(np.float64) @ phi.T.astype(np.float64))
    y = np.argmax(p @ (rng.normal(size=(V, k)) * 20) + rng.gumbel(size=(n + n_test, k)), axis=1)
    return phi, f, p, y


# --- the paper's protocol -----------------------------------------------------------
def test_protocol_parameters_small_and_large_train():
    small = make_logistic_cv(n_train=500, n_features=1000)
    assert small.solver == "liblinear" and small.cv == 5 and small.max_iter == 200
    assert small.random_state == 0 and small.fit_intercept is True
    assert small.dual is True  # 500 samples < 1000 features
    np.testing.assert_allclose(small.Cs, np.logspace(-6, 3, 10))
    large = make_logistic_cv(n_train=10_000, n_features=768)
    assert large.dual is False
    np.testing.assert_allclose(large.Cs, np.logspace(-3, 2, 6))
    np.testing.assert_allclose(paper_Cs(9_999), np.logspace(-6, 3, 10))
    assert paper_dual(100, 101) and not paper_dual(101, 101) and not paper_dual(100, 101, solver="sag")
    # sag has no dual form: dual is False for it whatever the shape, and dual=True is refused.
    assert make_logistic_cv(50, 100, solver="sag").dual is False
    with pytest.raises(ValueError, match="dual"):
        make_logistic_cv(50, 100, solver="sag", dual=True)


def test_fitted_estimators_use_protocol_parameters():
    X, y = _blobs(120, 2, d=200)  # n < d: dual
    probe = LogisticProbe(backend="sklearn").fit(X, y)
    (est,) = probe.estimators_
    assert est.dual is True and est.solver == "liblinear" and est.max_iter == 200
    np.testing.assert_allclose(est.Cs_, np.logspace(-6, 3, 10))
    assert probe.dual_ is True and probe.mode_ == "binary"


def test_binary_separable():
    X, y = _blobs(200, 2, std=0.5)
    r = logistic_probe(X[:150], y[:150], X[150:], y[150:])
    assert r["train_accuracy"] == 1.0 and r["test_accuracy"] == 1.0
    assert r["multi_class"] == "binary" and r["solver"] == "liblinear"
    assert r["coef"].shape == (1, 6) and r["intercept"].shape == (1,)
    assert isinstance(r["C"], float) and r["C"] in r["Cs"]
    assert r["n_train"] == 150 and r["n_test"] == 50 and r["n_features"] == 6
    pred = (X[150:] @ r["coef"][0] + r["intercept"][0] > 0).astype(int)
    np.testing.assert_array_equal(pred, r["test_predictions"])
    json.dumps({k: v for k, v in r.items() if not isinstance(v, np.ndarray)})


def test_one_vs_rest_four_classes():
    X, y = _blobs(300, 4)
    probe = LogisticProbe(backend="sklearn").fit(X, y)
    assert probe.mode_ == "ovr" and len(probe.estimators_) == 4
    assert isinstance(probe.C_, list) and len(probe.C_) == 4
    assert probe.C_ == [float(e.C_) for e in probe.estimators_]
    assert len(set(probe.C_)) > 1  # this data set: the classes pick different C
    # Predictions are argmax over the per-class binary decision functions ...
    per_class = np.stack([e.decision_function(X) for e in probe.estimators_], axis=1)
    np.testing.assert_array_equal(probe.predict(X), np.argmax(per_class, axis=1))
    # ... and the exported (W, b) reproduce them exactly.
    W, b = probe.coef_, probe.intercept_
    assert W.shape == (4, 6) and b.shape == (4,)
    np.testing.assert_array_equal(np.argmax(X @ W.T + b, axis=1), probe.predict(X))
    # scikit-learn 0.23 semantics: folds stratified on the 4-class labels, binary
    # accuracy per class, first (smallest) C among ties.
    folds = list(StratifiedKFold(5).split(X, y))
    Cs = np.logspace(-6, 3, 10)
    for c in range(4):
        yc = (y == c).astype(int)
        total = np.zeros(len(Cs))
        for tr, te in folds:
            for i, C in enumerate(Cs):
                m = LogisticRegression(C=C, solver="liblinear", max_iter=200, random_state=0)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    m.fit(X[tr], yc[tr])
                total[i] += np.mean(m.predict(X[te]) == yc[te])
        assert probe.C_[c] == pytest.approx(Cs[int(np.argmax(total))])


def test_sst5_exception_uses_sag_multinomial():
    X, y = _blobs(250, 5, std=2.0)
    sst5 = get_task("sst5")
    probe = LogisticProbe(**sst5.probe_solver("Phi p_f"))  # the job maps task -> solver settings
    assert probe.solver == "sag" and probe.multi_class == "multinomial"
    assert LogisticProbe(**sst5.probe_solver("f")).solver == "liblinear"
    r = logistic_probe(X[:200], y[:200], X[200:], y[200:], backend="sklearn", **sst5.probe_solver("phi_p"))
    assert r["solver"] == "sag" and r["multi_class"] == "multinomial" and r["dual"] is False
    assert isinstance(r["C"], float) and r["coef"].shape == (5, 6)
    r_f = logistic_probe(X[:200], y[:200], X[200:], y[200:], **sst5.probe_solver("f"))
    assert r_f["solver"] == "liblinear" and r_f["multi_class"] == "ovr" and len(r_f["C"]) == 5


def test_multinomial_export_matches_sklearn():
    X, y = _blobs(200, 3)
    probe = LogisticProbe(solver="sag", multi_class="multinomial", backend="sklearn").fit(X, y)
    np.testing.assert_array_equal(probe.predict(X), probe.estimators_[0].predict(X))
    np.testing.assert_array_equal(np.argmax(X @ probe.coef_.T + probe.intercept_, 1), probe.predict(X))


def test_random_split_protocol_is_reproducible():
    X, y = _blobs(200, 2, std=4.0, seed=1)

    def splits(seed):
        return [(s.train_index, s.test_index) for s in random_splits(X, y, n_splits=10, test_fraction=0.1, seed=seed)]

    Cs = [0.01, 1.0]  # a short grid keeps the 30 fits fast
    a = random_split_probe(X, y, splits(3), Cs=Cs)
    b = random_split_probe(X, y, splits(3), Cs=Cs)
    assert a["n_splits"] == 10 and len(a["test_accuracies"]) == 10
    assert a["test_accuracies"] == b["test_accuracies"]
    assert a["mean_test_accuracy"] == pytest.approx(np.mean(a["test_accuracies"]))
    assert a["std_test_accuracy"] == pytest.approx(np.std(a["test_accuracies"]))
    for i, (s, (tr, te)) in enumerate(zip(a["splits"], splits(3))):
        np.testing.assert_array_equal(s["test_index"], te)
        assert s["n_train"] == 180 and s["n_test"] == 20
        if i < 2:
            probe = LogisticProbe(Cs=Cs).fit(X[tr], y[tr])
            assert s["test_accuracy"] == probe.score(X[te], y[te]) and s["C"] == probe.C_
    c = random_split_probe(X, y, splits(4), Cs=Cs)
    assert not np.array_equal(c["splits"][0]["test_index"], a["splits"][0]["test_index"])
    with pytest.raises(ValueError, match="at least one"):
        random_split_probe(X, y, [])


def test_convergence_warnings_are_counted_not_shown():
    X, y = _blobs(200, 3, std=6.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = logistic_probe(X, y, max_iter=1, backend="sklearn")
    assert r["n_convergence_warnings"] > 0
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]


def test_logistic_errors():
    X, y = _blobs(40, 2)
    with pytest.raises(ValueError, match="empty"):
        logistic_probe(np.zeros((0, 3)), np.zeros(0, int))
    with pytest.raises(ValueError, match="labels"):
        logistic_probe(X, y[:-1])
    with pytest.raises(ValueError, match="single class"):
        logistic_probe(X, np.zeros(len(X), int))
    with pytest.raises(ValueError, match="both"):
        logistic_probe(X, y, X_test=X)
    with pytest.raises(ValueError, match="labels"):
        logistic_probe(X, y, X, y[:-2])
    with pytest.raises(ValueError, match="2-D"):
        logistic_probe(X[:, 0], y)


# --- streaming softmax probe ------------------------------------------------------
@pytest.mark.parametrize("k", [2, 3])
def test_softmax_probe_matches_sklearn(k):
    n, C = 300, 1.0
    phi, f, p, y = _p_problem(n, 200, k)
    sk = LogisticRegression(C=C, solver="lbfgs", tol=1e-10, max_iter=20_000).fit(p[:n], y[:n])
    l2 = l2_for_C(C, n, k)
    assert sklearn_C(l2, n, k) == pytest.approx(C)
    r = softmax_probe(f[:n], y[:n], f[n:], y[n:], phi=phi, l2=l2, epochs=200, batch_size=50,
                      learning_rate=0.02)
    sk_pred = sk.predict(p[n:])
    assert np.mean(r["test_predictions"] == sk_pred) >= 0.98
    assert abs(r["test_accuracy"] - np.mean(sk_pred == y[n:])) <= 0.02
    assert r["sklearn_C"] == pytest.approx(C) and r["cv_accuracy"] is None
    json.dumps({k: v for k, v in r.items() if not isinstance(v, np.ndarray)})
    # The mapping: same minimiser (binary: sklearn's w = w_1 - w_0).
    W = r["coef"]
    sk_W = sk.coef_ if k > 2 else np.concatenate([-sk.coef_ / 2, sk.coef_ / 2])
    assert np.linalg.norm(W - sk_W) / np.linalg.norm(sk_W) < 0.02


def test_softmax_probe_cv_heads_and_export(tmp_path):
    import keras

    phi, f, p, y = _p_problem(240, 60, 3, seed=1)
    grid = (1e-2, 1e-4, 0.0)
    kw = dict(phi=phi, epochs=4, batch_size=64, seed=0)
    probe = SoftmaxProbe(l2_grid=grid, n_folds=3, **kw).fit(f[:240], y[:240])
    assert len(probe.cv_accuracy_) == 3 and probe.l2_ in grid
    assert probe.model.layers[-1].kernel_regularizer.l2 == pytest.approx(probe.l2_)
    # The all-rows head of the joint run equals a run with that l2 alone (independent heads).
    alone = SoftmaxProbe(l2=probe.l2_, **kw).fit(f[:240], y[:240])
    np.testing.assert_allclose(probe.coef_, alone.coef_, rtol=1e-3, atol=1e-5)
    # Exported pieces reproduce the predictions.
    pred = probe.predict(f[240:])
    np.testing.assert_array_equal(np.argmax(p[240:] @ probe.coef_.T + probe.intercept_, axis=1), pred)
    path = str(tmp_path / "probe.keras")
    probe.model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded.predict(f[240:], verbose=0), probe.decision_function(f[240:]),
                               rtol=1e-5, atol=1e-6)
    # The same probe through a numpy feature callable.
    fn = SoftmaxProbe(feature_fn=lambda fb: _softmax_rows(fb @ phi.T), l2=probe.l2_, epochs=4,
                      batch_size=64).fit(f[:240], y[:240])
    assert fn.coef_.shape == (3, 64) and np.mean(fn.predict(f[240:]) == pred) >= 0.8


def test_next_word_distribution_layer():
    phi, f, p, _ = _p_problem(10, 0, 2)
    layer = NextWordDistribution.from_phi(phi)
    assert not layer.trainable and not layer.trainable_weights
    np.testing.assert_allclose(np.asarray(layer(f)), p, rtol=1e-4, atol=1e-6)


def test_softmax_probe_errors():
    phi, f, _, y = _p_problem(30, 0, 2)
    with pytest.raises(ValueError, match="empty"):
        softmax_probe(np.zeros((0, 8), "float32"), np.zeros(0, int), phi=phi)
    with pytest.raises(ValueError, match="labels"):
        softmax_probe(f, y[:-1], phi=phi)
    with pytest.raises(ValueError, match="at most one"):
        SoftmaxProbe(phi=phi, feature_fn=lambda x: x)
    with pytest.raises(ValueError, match="single class"):
        SoftmaxProbe(phi=phi, l2=0.1).fit(f, np.zeros(len(f), int))


# --- zero-shot ------------------------------------------------------------------------------
def test_zero_shot_sums_probabilities_of_variants():
    token_ids = [10, 11, 20, 30]
    mapping = {10: 0, 11: 0, 20: 1, 30: 2}
    probs = np.array([
        [0.20, 0.20, 0.30, 0.10],  # class 0 wins on the sum (0.4) though token 20 is the top token
        [0.05, 0.05, 0.30, 0.10],  # class 1
        [0.01, 0.01, 0.02, 0.50],  # class 2
    ])
    labels = np.array([0, 1, 2])
    r = zero_shot_probe(np.log(probs), labels, token_ids, mapping, num_classes=3)
    assert r["accuracy"] == 1.0
    np.testing.assert_allclose(np.exp(r["class_scores"]), [[0.4, 0.3, 0.1], [0.1, 0.3, 0.1], [0.02, 0.02, 0.5]])
    # logits = log p + log Z(s): same predictions; probs likewise.
    logits = np.log(probs) + np.array([[3.0], [-7.0], [0.5]])
    np.testing.assert_array_equal(zero_shot_predict(logits, token_ids, mapping, score_type="logits"), labels)
    np.testing.assert_array_equal(zero_shot_predict(probs, token_ids, mapping, score_type="probs"), labels)
    # Columns may also be mapped by a per-column list (-1: ignored).
    s = zero_shot_scores(np.log(probs), token_ids, [0, -1, 1, 2])
    np.testing.assert_allclose(np.exp(s[0]), [0.2, 0.3, 0.1])


def test_zero_shot_errors_and_token_map():
    with pytest.raises(ValueError, match="labels"):
        zero_shot_probe(np.zeros((3, 2)), np.zeros(2, int), [1, 2], {1: 0, 2: 1})
    with pytest.raises(ValueError, match="columns"):
        zero_shot_scores(np.zeros((3, 2)), [1, 2, 3], {1: 0})
    with pytest.raises(ValueError, match="empty"):
        zero_shot_probe(np.zeros((0, 2)), np.zeros(0, int), [1, 2], {1: 0, 2: 1})
    variants = [(":(", " :(", 1), (":(", ":(", 2), (":)", ":)", 3)]
    assert class_token_map(variants, [":(", ":)"]) == {1: 0, 2: 0, 3: 1}
    with pytest.raises(ValueError, match="no single-token"):
        class_token_map(variants, [":(", ":)", "meh"])


def test_softmax_probe_from_sentence_features():
    import tflm
    from tflm.features import SentenceFeatures
    from tflm.tasks import load_split

    texts, labels = load_split("sst2", "train")
    texts, labels = texts[:48], labels[:48]
    sf = SentenceFeatures(tflm.load_lm("tiny-gpt2"), progress=False)
    f = sf.f(texts, prompt=" This movie is ")
    probe = SoftmaxProbe.from_sentence_features(sf, "p", l2=1e-3, epochs=1, batch_size=16).fit(f, labels)
    assert probe.coef_.shape == (2, sf.lm.vocabulary_size)
    p = sf.derive(f, ["p"])["p"]
    np.testing.assert_array_equal(np.argmax(p @ probe.coef_.T + probe.intercept_, axis=1), probe.predict(f))
    phi_p = SoftmaxProbe.from_sentence_features(sf, "phi_p", l2=1e-3, epochs=1, batch_size=16).fit(f, labels)
    assert phi_p.coef_.shape == (2, sf.lm.hidden_dim)

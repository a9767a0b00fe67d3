"""Probes as scikit-learn estimators and the registry `tflm probe` looks up."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs

from tflm.probes import (
    PROBES,
    LogisticProbe,
    SoftmaxProbe,
    ZeroShotProbe,
    evaluate_probe,
    probe_for,
    register_probe,
    zero_shot_predict,
)


def test_registry_covers_every_probe_feature():
    from tflm.jobs.probe_job import PROBE_FEATURES

    assert set(PROBES) == set(PROBE_FEATURES)
    assert probe_for("phi_p").estimator is LogisticProbe and probe_for("phi_p").input == "derived"
    assert probe_for("p").estimator is SoftmaxProbe and probe_for("p").input == "f"
    assert probe_for("zeroshot").estimator is ZeroShotProbe and probe_for("zeroshot").trains is False
    with pytest.raises(ValueError, match="no probe is registered for feature 'nope'"):
        probe_for("nope")
    with pytest.raises(ValueError, match="input"):
        register_probe("x", "x", LogisticProbe, input="bad")


def test_job_settings_map_task_to_solver():
    from tflm.jobs.probe_job import probe_settings
    from tflm.tasks import get_task

    sst5 = get_task("sst5")
    s = probe_settings(probe_for("phi_p"), sst5, "phi_p", probe_backend="sklearn")
    assert s == {"solver": "sag", "multi_class": "multinomial", "backend": "sklearn"}
    assert probe_for("f").make(**probe_settings(probe_for("f"), sst5, "f")).solver == "liblinear"


@pytest.mark.parametrize("estimator", [
    LogisticProbe(solver="sag", multi_class="multinomial", Cs=[0.1, 1.0]),
    SoftmaxProbe(l2=1e-3, epochs=2, seed=3),
    ZeroShotProbe(token_ids=[5, 7], token_classes={5: 0, 7: 1}, score_type="logits"),
])
def test_estimators_clone_with_their_params(estimator):
    copy = clone(estimator)
    assert type(copy) is type(estimator)
    a, b = copy.get_params(), estimator.get_params()
    assert a.keys() == b.keys() and all(repr(a[k]) == repr(b[k]) for k in a)


def test_zero_shot_estimator_matches_the_rule():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(40, 3))
    y = rng.integers(0, 2, size=40)
    probe = ZeroShotProbe(token_ids=[4, 9, 11], token_classes={4: 0, 9: 1, 11: 0}, num_classes=2,
                          score_type="logits")
    pred = zero_shot_predict(scores, [4, 9, 11], {4: 0, 9: 1, 11: 0}, 2, "logits")
    np.testing.assert_array_equal(probe.fit(scores, y).predict(scores), pred)
    assert probe.score(scores, y) == np.mean(pred == y)
    with pytest.raises(ValueError, match="token_ids"):
        ZeroShotProbe().fit(scores, y)


def test_evaluate_probe_clones_and_scores():
    X, y = make_blobs(200, centers=3, n_features=5, random_state=0, cluster_std=3.0)
    est = LogisticProbe(Cs=[0.01, 1.0])
    r = evaluate_probe(est, X[:150], y[:150], X[150:], y[150:])
    assert not hasattr(est, "coef_")  # the given estimator stays unfitted
    fitted = r["estimator"]
    assert r["test_accuracy"] == fitted.score(X[150:], y[150:])
    assert r["train_accuracy"] == fitted.score(X[:150], y[:150])
    assert r["C"] == fitted.C_ and r["n_train"] == 150 and r["n_test"] == 50 and r["backend"] == "tf"

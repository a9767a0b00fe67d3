"""Fit any probe estimator and score it: one fixed split, or the cr / mpqa random-split protocol."""

import numpy as np
from sklearn.base import clone

from tflm.probes.logistic_probe import LogisticProbe, _check_xy


def evaluate_probe(estimator, X_train, y_train, X_test=None, y_test=None):
    """Fit `estimator` (unfitted; it is cloned) on train, score train and test; a JSON-friendly dict.

    Keys: train_accuracy, test_accuracy (None without a test set), n_train,
    n_test, the estimator's ``summary()``, and ``estimator`` (the fitted
    clone; drop it before writing JSON).
    """
    X_train, y_train = _check_xy(X_train, y_train, "training")
    if (X_test is None) != (y_test is None):
        raise ValueError("pass both X_test and y_test, or neither")
    probe = clone(estimator).fit(X_train, y_train)
    train_acc = getattr(probe, "train_accuracy_", None)  # computed during fit by streaming probes
    result = {
        "train_accuracy": float(probe.score(X_train, y_train) if train_acc is None else train_acc),
        "test_accuracy": None,
        "n_train": int(X_train.shape[0]),
        "n_test": 0,
        **probe.summary(),
        "estimator": probe,
    }
    if X_test is not None:
        X_test, y_test = _check_xy(X_test, y_test, "test")
        result.update(test_accuracy=float(probe.score(X_test, y_test)), n_test=int(X_test.shape[0]))
    return result


def random_split_probe(X, y, splits, estimator=None, **probe_kwargs):
    """The cr / mpqa protocol: `evaluate_probe` on given train/test splits of all data; the mean.

    Args:
        X, y: all examples.
        splits: iterable of (train_index, test_index) pairs, e.g. from
            ``tflm.tasks.random_splits`` with the task's n_splits /
            test_fraction / split_seed (the job draws them).
        estimator: the unfitted probe (cloned per split); default
            ``LogisticProbe(**probe_kwargs)``.

    Returns:
        dict with mean_test_accuracy, std_test_accuracy (population std,
        ddof=0), test_accuracies (per split), mean_train_accuracy,
        std_train_accuracy, train_accuracies, C (per split, None for probes
        without one), n_splits, n_examples, n_convergence_warnings (total)
        and splits (each split's `evaluate_probe` result, without the
        estimator, plus its train_index / test_index).
    """
    if estimator is None:
        estimator = LogisticProbe(**probe_kwargs)
    elif probe_kwargs:
        raise ValueError("pass either an estimator or LogisticProbe settings, not both")
    X, y = _check_xy(X, y, "all-data")
    results = []
    for train_index, test_index in splits:
        train_index, test_index = np.asarray(train_index), np.asarray(test_index)
        res = evaluate_probe(estimator, X[train_index], y[train_index], X[test_index], y[test_index])
        res.pop("estimator")
        res["train_index"] = train_index
        res["test_index"] = test_index
        results.append(res)
    if not results:
        raise ValueError("random_split_probe needs at least one (train_index, test_index) split")
    test_acc = np.array([s["test_accuracy"] for s in results])
    train_acc = np.array([s["train_accuracy"] for s in results])
    return {
        "mean_test_accuracy": float(test_acc.mean()),
        "std_test_accuracy": float(test_acc.std()),
        "test_accuracies": test_acc.tolist(),
        "mean_train_accuracy": float(train_acc.mean()),
        "std_train_accuracy": float(train_acc.std()),
        "train_accuracies": train_acc.tolist(),
        "C": [s.get("C") for s in results],
        "n_splits": len(results),
        "n_examples": int(X.shape[0]),
        "n_convergence_warnings": int(sum(s.get("n_convergence_warnings", 0) for s in results)),
        "splits": results,
    }

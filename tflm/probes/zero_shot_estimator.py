"""The zero-shot classifier as a scikit-learn estimator (no training; see `tflm.probes.zero_shot`)."""

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from tflm.probes.zero_shot import SCORE_TYPES, calibrate_class_scores, zero_shot_scores


class ZeroShotProbe(ClassifierMixin, BaseEstimator):
    """argmax over classes of the pooled class-word scores; `fit` only records the classes.

    Args:
        token_ids: the scored token ids (columns of the input scores).
        token_classes: the class of each token id (`class_token_map`).
        num_classes: k (default: 1 + the largest class in token_classes).
        score_type: "logprobs" | "logits" | "probs" (see `zero_shot_scores`).
        calibrate: centre each class score by its mean over the texts scored
            together (label-free; `calibrate_class_scores`).

    Inputs X are (n, len(token_ids)) scores, e.g. the "class" word feature.
    Predictions are class indices 0..k-1 (the task's label ids).
    """

    def __init__(self, token_ids=None, token_classes=None, num_classes=None, score_type="logprobs",
                 calibrate=False):
        self.token_ids = token_ids
        self.token_classes = token_classes
        self.num_classes = num_classes
        self.score_type = score_type
        self.calibrate = calibrate

    def _check_params(self):
        if self.token_ids is None or self.token_classes is None:
            raise ValueError("ZeroShotProbe needs token_ids and token_classes")
        if self.score_type not in SCORE_TYPES:
            raise ValueError(f"score_type must be one of {SCORE_TYPES}, got {self.score_type!r}")

    def fit(self, X=None, y=None):
        """No parameters to learn; validates the settings and sets ``classes_``."""
        self._check_params()
        k = self.num_classes
        if k is None:
            k = 1 + max(int(c) for c in (self.token_classes.values() if isinstance(self.token_classes, dict)
                                         else self.token_classes))
        self.classes_ = np.arange(int(k))
        return self

    def decision_function(self, X):
        """(n, k) pooled class scores (centred over the n rows when `calibrate`)."""
        if not hasattr(self, "classes_"):
            self.fit()
        scores = zero_shot_scores(np.asarray(X), self.token_ids, self.token_classes, len(self.classes_),
                                  self.score_type)
        return calibrate_class_scores(scores) if self.calibrate else scores

    def predict(self, X):
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]

    def summary(self):
        return {"score_type": self.score_type, "n_classes": int(len(self.classes_)), "calibrated": bool(self.calibrate)}

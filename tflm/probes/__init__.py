"""Probes on sentence features: the paper's logistic regression, a streaming softmax probe, zero-shot."""

from tflm.probes.logistic_probe import (
    LogisticProbe,
    logistic_probe,
    make_logistic_cv,
    paper_Cs,
    paper_dual,
    random_split_probe,
)
from tflm.probes.softmax_probe import (
    DEFAULT_L2_GRID,
    NextWordDistribution,
    SoftmaxProbe,
    l2_for_C,
    sklearn_C,
    softmax_probe,
)
from tflm.probes.zero_shot import class_token_map, zero_shot_predict, zero_shot_probe, zero_shot_scores

__all__ = [
    "DEFAULT_L2_GRID",
    "LogisticProbe",
    "NextWordDistribution",
    "SoftmaxProbe",
    "class_token_map",
    "l2_for_C",
    "logistic_probe",
    "make_logistic_cv",
    "paper_Cs",
    "paper_dual",
    "random_split_probe",
    "sklearn_C",
    "softmax_probe",
    "zero_shot_predict",
    "zero_shot_probe",
    "zero_shot_scores",
]

"""Probes on sentence features: the paper's logistic regression, a streaming softmax probe, zero-shot."""

from tflm.probes.evaluate import evaluate_probe, random_split_probe
from tflm.probes.logistic_probe import (
    LogisticProbe,
    logistic_probe,
    make_logistic_cv,
    paper_Cs,
    paper_dual,
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
from tflm.probes.zero_shot_estimator import ZeroShotProbe
from tflm.probes.registry import PROBES, ProbeSpec, probe_for, register_probe

__all__ = [
    "DEFAULT_L2_GRID",
    "LogisticProbe",
    "NextWordDistribution",
    "PROBES",
    "ProbeSpec",
    "SoftmaxProbe",
    "class_token_map",
    "evaluate_probe",
    "l2_for_C",
    "logistic_probe",
    "make_logistic_cv",
    "paper_Cs",
    "paper_dual",
    "probe_for",
    "random_split_probe",
    "register_probe",
    "sklearn_C",
    "softmax_probe",
    "zero_shot_predict",
    "zero_shot_probe",
    "zero_shot_scores",
    "ZeroShotProbe",
]

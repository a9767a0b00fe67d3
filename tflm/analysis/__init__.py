"""Analyses of the paper's claims: quadratic log-partition, Phi p_f ~ A f + b,
accuracy vs LM loss, and exact theory helpers (float64 numpy)."""

from tflm.analysis.accuracy_vs_loss import (
    CheckpointRecord,
    check_same_architecture,
    fit_reference_curve,
    plot_accuracy_vs_loss,
)
from tflm.analysis.linear_relation import (
    LinearRelation,
    fit_linear_relation,
    linear_relation_report,
    relative_error,
)
from tflm.analysis.log_partition import (
    QuadraticLogPartition,
    collect_log_partition,
    embedding_covariance,
    evaluate_quadratic_fit,
    fit_gaussian_log_partition,
    fit_quadratic_log_partition,
    n_quadratic_params,
    plot_log_partition_fit,
    quadratic_design,
    r_squared,
)
from tflm.analysis.quad_reference import quad_reference
from tflm.analysis.theory import (
    augment_bias,
    bound,
    conditional_mean,
    distribution_shift_gamma,
    entropy,
    expected_cross_entropy,
    expected_logistic_loss,
    expected_quad_loss,
    gaussian_quadrature_vocabulary,
    kl,
    log_partition,
    log_softmax,
    logistic_loss,
    quad_excess,
    quad_optimum,
    softmax,
    softmax_lm_excess_loss,
    softmax_optimum,
)

__all__ = [
    "CheckpointRecord", "LinearRelation", "QuadraticLogPartition", "augment_bias", "bound",
    "check_same_architecture", "collect_log_partition", "conditional_mean",
    "distribution_shift_gamma", "embedding_covariance", "entropy", "evaluate_quadratic_fit",
    "expected_cross_entropy", "expected_logistic_loss", "expected_quad_loss",
    "fit_gaussian_log_partition", "fit_linear_relation", "fit_quadratic_log_partition",
    "fit_reference_curve", "gaussian_quadrature_vocabulary", "kl", "linear_relation_report",
    "log_partition", "log_softmax", "logistic_loss", "n_quadratic_params",
    "plot_accuracy_vs_loss", "plot_log_partition_fit", "quad_excess", "quad_optimum", "quad_reference",
    "quadratic_design", "r_squared", "relative_error", "softmax", "softmax_lm_excess_loss",
    "softmax_optimum",
]

"""Full fine-tuning of a causal LM with a linear head: classifier, grid, export."""

from tflm.finetune.classifier import Classifier, LMSnapshot
from tflm.finetune.config import DEFAULT_BATCH_SIZES, DEFAULT_LRS, FinetuneConfig
from tflm.tasks.splits import finetune_splits
from tflm.finetune.export import LinearProbeHead, export_classifier, export_probe, export_sklearn_probe
from tflm.finetune.grid import finetune, read_events

__all__ = ["Classifier", "DEFAULT_BATCH_SIZES", "DEFAULT_LRS", "LMSnapshot", "LinearProbeHead", "export_classifier",
           "export_probe", "export_sklearn_probe", "FinetuneConfig", "finetune", "finetune_splits", "read_events"]

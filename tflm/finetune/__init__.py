"""Full fine-tuning of a causal LM with a linear head: classifier, grid, export."""

from tflm.finetune.classifier import Classifier, LMSnapshot
from tflm.finetune.data import finetune_splits
from tflm.finetune.export import export_classifier
from tflm.finetune.grid import DEFAULT_BATCH_SIZES, DEFAULT_LRS, finetune, read_events

__all__ = ["Classifier", "DEFAULT_BATCH_SIZES", "DEFAULT_LRS", "LMSnapshot", "export_classifier", "finetune",
           "finetune_splits", "read_events"]

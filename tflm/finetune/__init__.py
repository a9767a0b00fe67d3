"""Full fine-tuning of a causal LM with a linear head: classifier, grid, export."""

from tflm.finetune.classifier import Classifier, LMSnapshot
from tflm.finetune.config import DEFAULT_BATCH_SIZES, DEFAULT_LRS, FinetuneConfig
from tflm.tasks.splits import finetune_splits
from tflm.finetune.export import export_classifier
from tflm.finetune.fused_adam import FusedAdam
from tflm.finetune.grid import finetune, read_events

__all__ = ["Classifier", "DEFAULT_BATCH_SIZES", "DEFAULT_LRS", "LMSnapshot", "export_classifier", "FinetuneConfig",
           "finetune", "finetune_splits", "FusedAdam", "read_events"]

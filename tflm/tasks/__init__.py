"""Downstream tasks: registry, data loading, splits, detokenization."""

from tflm.tasks.detokenize import ptb_detokenize
from tflm.tasks.errors import DataError
from tflm.tasks.loaders import as_tf_dataset, load_csv, load_tsv
from tflm.tasks.registry import get_task, list_tasks, register_task, task_from_folder
from tflm.tasks.sources import PACKAGED_DATA_DIR, load_split, load_tfds, split_path
from tflm.tasks.splits import (
    RandomSplit,
    finetune_splits,
    load_texts,
    random_splits,
    resolve_task,
    subsample,
)
from tflm.tasks.task import Task, canonical_feature_name

__all__ = [
    "DataError",
    "PACKAGED_DATA_DIR",
    "RandomSplit",
    "Task",
    "as_tf_dataset",
    "canonical_feature_name",
    "finetune_splits",
    "get_task",
    "list_tasks",
    "load_csv",
    "load_split",
    "load_texts",
    "load_tfds",
    "load_tsv",
    "ptb_detokenize",
    "random_splits",
    "register_task",
    "resolve_task",
    "split_path",
    "subsample",
    "task_from_folder",
]

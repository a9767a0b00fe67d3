"""Downstream tasks: registry, data loading, splits, detokenization."""

from tflm.tasks.detokenize import ptb_detokenize
from tflm.tasks.errors import DataError
from tflm.tasks.loaders import (
    PACKAGED_DATA_DIR,
    RandomSplit,
    as_tf_dataset,
    load_csv,
    load_split,
    load_tfds,
    load_tsv,
    random_splits,
    split_path,
)
from tflm.tasks.registry import get_task, list_tasks, register_task, task_from_folder
from tflm.tasks.task import Task, canonical_feature_name

__all__ = [
    "DataError",
    "PACKAGED_DATA_DIR",
    "RandomSplit",
    "Task",
    "as_tf_dataset",
    "canonical_feature_name",
    "get_task",
    "list_tasks",
    "load_csv",
    "load_split",
    "load_tfds",
    "load_tsv",
    "ptb_detokenize",
    "random_splits",
    "register_task",
    "split_path",
    "task_from_folder",
]

"""Loading a task split (or several) for the jobs."""

import numpy as np

from tflm.tasks import get_task, load_split, task_from_folder

SPLITS = ("train", "dev", "test", "all")


def resolve_task(name, data_dir=None):
    """A registered task by name, or a user task from a folder path."""
    import os

    if os.path.isdir(name):
        return task_from_folder(name)
    return get_task(name)


def load_texts(task, split, data_dir=None, detokenize=False):
    """(texts, labels, split_names) for one split; "all" concatenates the splits
    (or reads all.tsv for tasks with random 90/10 splits)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    if split != "all" or task.is_random_split:
        texts, labels = load_split(task, split, data_dir, detokenize=detokenize)
        return list(texts), np.asarray(labels), np.array([split] * len(texts))
    parts = [load_texts(task, s, data_dir, detokenize) for s in ("train", "dev", "test")]
    return (
        sum((p[0] for p in parts), []),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


def subsample(texts, labels, n, seed=0):
    """A seeded subsample of n examples in their original order; (texts, labels, subsampled?)."""
    if n is None or n >= len(texts):
        return texts, labels, False
    idx = np.sort(np.random.default_rng(seed).permutation(len(texts))[:n])
    return [texts[i] for i in idx], labels[idx], True

"""A task's splits in one place: resolving a task, split protocols and seeded subsampling.

- `resolve_task`: a registered name, a `Task`, or a folder of tsv files;
- `load_texts`: one split (or "all") as texts, labels and split names;
- `subsample` / `subsample_index`: the one seeded subsample every command
  uses, so ``--max-train N --seed s`` gives probes and fine-tuning the same
  training examples;
- `random_splits`: the reference's random 90/10 protocol (CR, MPQA);
- `finetune_splits`: the fine-tuning protocols ("paper": the seed card's
  SST-2 dev / test halves and AG News 90/10; "files").
"""

import collections
import os

import numpy as np

from tflm.tasks.errors import DataError
from tflm.tasks.sources import SPLITS, load_split, split_path
from tflm.tasks.registry import get_task, task_from_folder
from tflm.tasks.task import Task

FINETUNE_PROTOCOLS = ("paper", "files")

RandomSplit = collections.namedtuple(
    "RandomSplit",
    ["train_texts", "train_labels", "test_texts", "test_labels", "train_index", "test_index"],
)


def resolve_task(task):
    """A `Task` from a `Task`, a registered name, or a folder of tsv files (a user task)."""
    if isinstance(task, Task):
        return task
    if isinstance(task, str) and os.path.isdir(task):
        return task_from_folder(task)
    return get_task(task)


def take(items, index):
    """`items` (a list or a numpy array) at the positions `index`, in that order."""
    if isinstance(items, np.ndarray):
        return items[index]
    return [items[i] for i in index]


def subsample_index(n, limit, seed=0):
    """Sorted positions of a seeded random subset of ``min(n, limit)`` of ``range(n)``."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[: int(limit)])


def subsample(texts, labels, n, seed=0):
    """A seeded subsample of n examples in their original order; (texts, labels, subsampled?)."""
    if n is None or n >= len(texts):
        return texts, labels, False
    index = subsample_index(len(texts), n, seed)
    return take(texts, index), np.asarray(labels)[index], True


def split_name(split, subsampled, n):
    """The name a split's features are cached under: "train", or "train[500]" for a seeded subsample of 500."""
    return f"{split}[{n}]" if subsampled else split


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


def random_splits(texts, labels, n_splits=10, test_fraction=0.1, seed=0):
    """Seeded random train/test splits (the reference's CR / MPQA protocol).

    Each split is a fresh permutation; the first ``int(n * (1 -
    test_fraction))`` examples train, the rest test. The reference drew
    ``np.random.permutation`` unseeded; with ``seed=s`` these are the
    splits it draws after ``np.random.seed(s)``.

    `texts` may be a list or a numpy array (e.g. precomputed features).

    Yields:
        `RandomSplit(train_texts, train_labels, test_texts, test_labels,
        train_index, test_index)`.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if len(texts) != n:
        raise ValueError(f"{len(texts)} texts but {n} labels")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_train = int(n * (1 - test_fraction))
    if n_train < 1 or n_train >= n:
        raise ValueError(f"{n} examples are too few for a {1 - test_fraction:g}/{test_fraction:g} split")
    rng = np.random.RandomState(seed)
    for _ in range(n_splits):
        perm = rng.permutation(n)
        tr, te = perm[:n_train], perm[n_train:]
        yield RandomSplit(take(texts, tr), labels[tr], take(texts, te), labels[te], tr, te)


def _permute(n, seed):
    return np.random.RandomState(seed).permutation(n)


def _pick(texts, labels, index):
    return take(list(texts), index), np.asarray(labels)[index]


def _has_split(task, split, data_dir):
    try:
        split_path(task, split, data_dir)
        return True
    except DataError:
        return False


def missing_data(task, data_dir=None):
    """None when the files a probe of `task` reads are here ("all" for a random-split task, else train
    and test), else why not (the first missing file's DataError message)."""
    task = resolve_task(task)
    try:
        for split in ("all",) if task.is_random_split else ("train", "test"):
            split_path(task, split, data_dir)
        return None
    except DataError as e:
        return str(e)


def finetune_splits(task, data_dir=None, protocol="paper", seed=0, max_train=None, max_eval=None):
    """Train / dev / test texts and labels for fine-tuning.

    `protocol="paper"` (the seed card):
      - sst2 (and sst5, by analogy; the card only states SST-2): the
        train file is kept whole (6,920 sentences for SST-2); the ORIGINAL
        TEST set is split in half by a seeded permutation, first half dev
        (910), second half test (911). The official dev set is unused.
      - agnews: the training data is split 90/10 (seeded) into train / dev
        and the test set is kept (108k / 12k / 7.6k on the full data). When
        a prepared copy already split some of train off into ``dev.tsv``
        (the shared 5,000-example subset: 4,500 + 500), train and dev are
        pooled first, so the result is still a 90/10 split of the training
        data.
      - any other task: its own files (as ``protocol="files"``).
    `protocol="files"`: train / dev / test files as given. A task without a
    dev file gets a seeded 90/10 split of train; a task with only
    ``all.tsv`` gets a seeded 80/10/10 split.

    `max_train` / `max_eval`: keep a seeded random subset (`subsample`, the
    same one the probes use) of at most that many training / dev and test
    examples.

    Returns ({"train": (texts, labels), "dev": ..., "test": ...}, description).
    """
    task = resolve_task(task)
    if protocol not in FINETUNE_PROTOCOLS:
        raise ValueError(f"unknown split protocol {protocol!r}; choose one of {FINETUNE_PROTOCOLS}")
    name = task.name
    if protocol == "paper" and name in ("sst2", "sst5"):
        train = load_split(task, "train", data_dir)
        texts, labels = load_split(task, "test", data_dir)
        perm = _permute(len(texts), seed)
        half = len(texts) // 2
        splits = {"train": train, "dev": _pick(texts, labels, perm[:half]), "test": _pick(texts, labels, perm[half:])}
        how = f"paper: train file; original test split in half (seed {seed}) into dev / test"
    elif protocol == "paper" and name == "agnews":
        texts, labels = load_split(task, "train", data_dir)
        texts, labels = list(texts), np.asarray(labels)
        pooled = ""
        if _has_split(task, "dev", data_dir):
            dt, dl = load_split(task, "dev", data_dir)
            texts, labels = texts + list(dt), np.concatenate([labels, dl])
            pooled = " (train + dev files pooled)"
        perm = _permute(len(texts), seed)
        n_train = int(len(texts) * 0.9)
        splits = {
            "train": _pick(texts, labels, perm[:n_train]),
            "dev": _pick(texts, labels, perm[n_train:]),
            "test": load_split(task, "test", data_dir),
        }
        how = f"paper: training data{pooled} split 90/10 (seed {seed}) into train / dev; test file"
    elif _has_split(task, "train", data_dir):
        train = load_split(task, "train", data_dir)
        test = load_split(task, "test", data_dir)
        if _has_split(task, "dev", data_dir):
            splits = {"train": train, "dev": load_split(task, "dev", data_dir), "test": test}
            how = "files: train / dev / test"
        else:
            texts, labels = train
            perm = _permute(len(texts), seed)
            n_train = int(len(texts) * 0.9)
            splits = {"train": _pick(texts, labels, perm[:n_train]), "dev": _pick(texts, labels, perm[n_train:]),
                      "test": test}
            how = f"files: train split 90/10 (seed {seed}) into train / dev; test file"
    else:
        texts, labels = load_split(task, "all", data_dir)
        perm = _permute(len(texts), seed)
        a, b = int(len(texts) * 0.8), int(len(texts) * 0.9)
        splits = {"train": _pick(texts, labels, perm[:a]), "dev": _pick(texts, labels, perm[a:b]),
                  "test": _pick(texts, labels, perm[b:])}
        how = f"files: all.tsv split 80/10/10 (seed {seed})"
    splits = {k: (list(t), np.asarray(y, dtype=np.int64)) for k, (t, y) in splits.items()}
    for key, limit in (("train", max_train), ("dev", max_eval), ("test", max_eval)):
        if limit is not None:
            limit = int(limit)
            if limit < 1:
                raise ValueError(f"max_{'train' if key == 'train' else 'eval'} must be >= 1, got {limit}")
            texts, labels, subsampled = subsample(*splits[key], limit, seed)
            if subsampled:
                splits[key] = (texts, labels)
                how += f"; {key} subsampled to {limit}"
    for key, (texts, _) in splits.items():
        if not texts:
            raise ValueError(f"task {name!r}: the {key} split is empty")
    return splits, how

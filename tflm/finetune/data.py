"""Fine-tuning data: the paper's splits, encoding, and per-replica padded batches.

Batch sizes are GLOBAL (summed over all replicas of all workers): with R
replicas each replica gets ``global / R`` examples, so a grid is the same
experiment on one device or many. A global batch size that R does not
divide is an error.

Training batches are a seeded random permutation of the training set for
every epoch (``seed``, ``epoch``) -> order, so a run resumed at epoch e sees
exactly the batches an uninterrupted run sees; the last incomplete batch of
each epoch is dropped (every global batch is full, so every replica gets the
same number of examples and the loss is the mean over the global batch
whatever the replica count). Evaluation batches are sorted by length and
the last one is filled with zero-weight rows, so dev / test accuracy counts
every example exactly once. Each global batch is padded to its own longest
example (rounded up to `pad_to_multiple` to limit retracing); all replicas
of one global batch get the same padded length.

Input pipelines: under `MirroredStrategy` one generator per replica
(``InputReplicationMode.PER_REPLICA``), so the distributed dataset's
cardinality is the number of global steps and Keras starts a fresh iterator
(reading the current epoch) every epoch. Under `MultiWorkerMirroredStrategy`
one generator per worker; with one device per worker (the tested case) the
cardinality is again the step count. With several devices per worker it is
steps x devices, and Keras then probes one step past the data each epoch
(untested; with MirroredStrategy that mismatch shifted Adam's step count).
"""

import dataclasses

import numpy as np

from tflm.features.inputs import encode_texts
from tflm.tasks import get_task, load_split, task_from_folder
from tflm.tasks.errors import DataError

SPLIT_PROTOCOLS = ("paper", "files")


def resolve_task(task):
    """A `Task` from a registered name, a `Task`, or a folder of tsv files."""
    import os

    if isinstance(task, str) and os.path.isdir(task):
        return task_from_folder(task)
    return get_task(task)


def _permute(n, seed):
    return np.random.RandomState(seed).permutation(n)


def _take(texts, labels, index):
    return [texts[i] for i in index], np.asarray(labels)[index]


def _has_split(task, split, data_dir):
    from tflm.tasks import split_path

    try:
        split_path(task, split, data_dir)
        return True
    except DataError:
        return False


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

    `max_train` / `max_eval`: keep a seeded random subset of at most that
    many training / dev and test examples (quick runs, tests).

    Returns ({"train": (texts, labels), "dev": ..., "test": ...}, description).
    """
    task = resolve_task(task)
    if protocol not in SPLIT_PROTOCOLS:
        raise ValueError(f"unknown split protocol {protocol!r}; choose one of {SPLIT_PROTOCOLS}")
    name = task.name
    if protocol == "paper" and name in ("sst2", "sst5"):
        train = load_split(task, "train", data_dir)
        texts, labels = load_split(task, "test", data_dir)
        perm = _permute(len(texts), seed)
        half = len(texts) // 2
        splits = {"train": train, "dev": _take(texts, labels, perm[:half]), "test": _take(texts, labels, perm[half:])}
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
            "train": _take(texts, labels, perm[:n_train]),
            "dev": _take(texts, labels, perm[n_train:]),
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
            splits = {"train": _take(texts, labels, perm[:n_train]), "dev": _take(texts, labels, perm[n_train:]),
                      "test": test}
            how = f"files: train split 90/10 (seed {seed}) into train / dev; test file"
    else:
        texts, labels = load_split(task, "all", data_dir)
        perm = _permute(len(texts), seed)
        a, b = int(len(texts) * 0.8), int(len(texts) * 0.9)
        splits = {"train": _take(texts, labels, perm[:a]), "dev": _take(texts, labels, perm[a:b]),
                  "test": _take(texts, labels, perm[b:])}
        how = f"files: all.tsv split 80/10/10 (seed {seed})"
    splits = {k: (list(t), np.asarray(y, dtype=np.int64)) for k, (t, y) in splits.items()}
    for key, limit in (("train", max_train), ("dev", max_eval), ("test", max_eval)):
        if limit is not None:
            limit = int(limit)
            if limit < 1:
                raise ValueError(f"max_{'train' if key == 'train' else 'eval'} must be >= 1, got {limit}")
            texts, labels = splits[key]
            if limit < len(texts):
                keep = np.sort(_permute(len(texts), seed + 1)[:limit])
                splits[key] = _take(texts, labels, keep)
                how += f"; {key} subsampled to {limit}"
    for key, (texts, _) in splits.items():
        if not texts:
            raise ValueError(f"task {name!r}: the {key} split is empty")
    return splits, how


@dataclasses.dataclass
class EncodedSplit:
    """Token ids (list of int lists) and int labels of one split."""

    ids: list
    labels: np.ndarray
    truncated: int = 0

    def __len__(self):
        return len(self.ids)

    @property
    def lengths(self):
        return np.asarray([len(x) for x in self.ids])


def encode_split(tokenizer, texts, labels, prompt=None, max_length=1024, strip_prompt_space=False):
    ids, truncated = encode_texts(tokenizer, texts, prompt, max_length, strip_prompt_space)
    return EncodedSplit(ids, np.asarray(labels, dtype=np.int64), truncated)


# --- batch plans (global batches as index arrays; -1 marks a padding row) -----------
def train_plan(n, global_batch, seed, epoch):
    """Global batches of epoch `epoch`: a (seed, epoch)-seeded permutation, remainder dropped."""
    perm = np.random.RandomState([int(seed) & 0x7FFFFFFF, int(epoch)]).permutation(n)
    steps = n // global_batch
    return [perm[i * global_batch : (i + 1) * global_batch] for i in range(steps)]


def eval_plan(lengths, global_batch):
    """Global batches sorted by length; the last is filled with -1 (zero-weight) rows."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches = []
    for i in range(0, len(order), global_batch):
        b = order[i : i + global_batch]
        if len(b) < global_batch:
            b = np.concatenate([b, -np.ones(global_batch - len(b), dtype=b.dtype)])
        batches.append(b)
    return batches


def check_batch_size(global_batch, num_replicas, n_train):
    global_batch = int(global_batch)
    if global_batch < 1:
        raise ValueError(f"batch size must be positive, got {global_batch}")
    if global_batch % num_replicas:
        raise ValueError(
            f"global batch size {global_batch} is not divisible by the {num_replicas} replicas in sync "
            f"(each replica gets global / replicas examples)"
        )
    if global_batch > n_train:
        raise ValueError(f"batch size {global_batch} is larger than the training set ({n_train} examples)")
    return global_batch


def _pieces(split, batch, num_replicas, replica_ids, pad_to_multiple, weighted):
    """Per-replica arrays of one global batch for the given replicas."""
    real = batch[batch >= 0]
    longest = max(len(split.ids[i]) for i in real)
    length = int(-(-longest // pad_to_multiple) * pad_to_multiple)
    per = len(batch) // num_replicas
    for r in replica_ids:
        rows = batch[r * per : (r + 1) * per]
        token_ids = np.zeros((per, length), np.int32)
        mask = np.zeros((per, length), np.int32)
        labels = np.zeros((per,), np.int32)
        weights = np.zeros((per,), np.float32)
        for j, i in enumerate(rows):
            if i < 0:
                mask[j, 0] = 1  # a one-token dummy row (weight 0): no fully masked rows
                continue
            ids = split.ids[i]
            token_ids[j, : len(ids)] = ids
            mask[j, : len(ids)] = 1
            labels[j] = split.labels[i]
            weights[j] = 1.0
        x = {"token_ids": token_ids, "padding_mask": mask}
        yield (x, labels, weights) if weighted else (x, labels)


class EpochCounter:
    """Holds the epoch the training input pipeline should produce next.

    `SetEpoch` (a callback) writes it at ``on_epoch_begin``; Keras creates a
    new input iterator at the start of every epoch (``steps_per_epoch`` is
    left to None), so each epoch's generator reads the right value.
    """

    def __init__(self, epoch=0):
        self.epoch = int(epoch)


def distributed_dataset(strategy, split, plan_fn, num_batches, weighted, pad_to_multiple=8, repeat=False):
    """A dataset for `model.fit` / `evaluate` under `strategy`.

    `plan_fn()` returns the list of global batches (index arrays) to produce
    (called when an iterator starts, so it may depend on the current epoch).
    Through `strategy.distribute_datasets_from_function`, input pipeline p
    of P produces, for every global batch, the per-replica slices of its
    own replicas in order, so replica r always gets rows
    ``[r * B / R, (r + 1) * B / R)`` of each global batch: the same split on
    one worker with R devices or R workers with one device.
    """
    import tensorflow as tf

    num_replicas = strategy.num_replicas_in_sync
    spec_x = {
        "token_ids": tf.TensorSpec([None, None], tf.int32),
        "padding_mask": tf.TensorSpec([None, None], tf.int32),
    }
    spec = (spec_x, tf.TensorSpec([None], tf.int32))
    if weighted:
        spec = spec + (tf.TensorSpec([None], tf.float32),)

    def dataset_fn(input_context):
        pipelines = input_context.num_input_pipelines
        local = num_replicas // pipelines
        pid = input_context.input_pipeline_id
        replica_ids = list(range(pid * local, (pid + 1) * local))

        def gen():
            for batch in plan_fn():
                yield from _pieces(split, batch, num_replicas, replica_ids, pad_to_multiple, weighted)

        ds = tf.data.Dataset.from_generator(gen, output_signature=spec)
        ds = ds.apply(tf.data.experimental.assert_cardinality(num_batches * local))
        if repeat:
            ds = ds.repeat()
        return ds.prefetch(2)

    options = None
    if isinstance(strategy, tf.distribute.MirroredStrategy) and num_replicas > 1:
        # One pipeline per replica: the distributed dataset's cardinality is
        # then the number of global steps (Keras sizes epochs by it).
        options = tf.distribute.InputOptions(
            experimental_replication_mode=tf.distribute.InputReplicationMode.PER_REPLICA
        )
    return strategy.distribute_datasets_from_function(dataset_fn, options)

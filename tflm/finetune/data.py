"""Fine-tuning data: encoding and per-replica padded batches (splits: `tflm.tasks.splits`).

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

from tflm.features.batching import padded_length, shuffled_length_batches
from tflm.tokenization.text_encoder import TextEncoder


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
    """An `EncodedSplit` of texts encoded by a `TextEncoder` with these settings."""
    ids, truncated = TextEncoder(tokenizer, prompt, max_length, strip_prompt_space).encode(texts)
    return EncodedSplit(ids, np.asarray(labels, dtype=np.int64), truncated)


# --- batch plans (global batches as index arrays; -1 marks a padding row) -----------
BUCKET_WINDOW = 50  # batches per length-sorted window of a training epoch (see shuffled_length_batches)


def train_plan(lengths, global_batch, seed, epoch, bucket_window=BUCKET_WINDOW):
    """Global batches of epoch `epoch`, seeded by (seed, epoch), remainder dropped.

    Length-bucketed within windows of `bucket_window` batches (`shuffled_length_batches`);
    0 gives the unsorted batches of the permutation (tflm before 2026-12-07)."""
    return shuffled_length_batches(lengths, global_batch, seed, epoch, bucket_window)


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
    length = padded_length(longest, pad_to_multiple)
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

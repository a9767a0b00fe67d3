"""Corpus -> packed fixed-length token blocks for LM training (tf.data)."""

import os

import numpy as np
import tensorflow as tf


def read_corpus(path):
    """Documents of a text corpus, one per non-empty line."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"corpus not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            docs = [line.strip() for line in f]
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid UTF-8 ({e})") from None
    docs = [d for d in docs if d]
    if not docs:
        raise ValueError(f"{path}: empty corpus (no non-empty lines)")
    return docs


def pack_blocks(tokenizer, docs, seq_len, source="corpus"):
    """Tokenize, join documents with EOS and cut into (n, seq_len + 1) blocks."""
    eos = tokenizer.eos_token_id
    stream = []
    for ids in tokenizer.encode_batch(docs):
        stream.extend(ids)
        if eos is not None:
            stream.append(eos)
    n = len(stream) // (seq_len + 1)
    if n == 0:
        raise ValueError(
            f"{source}: {len(stream)} tokens is shorter than one block of "
            f"seq_len + 1 = {seq_len + 1} tokens"
        )
    return np.asarray(stream[: n * (seq_len + 1)], dtype=np.int32).reshape(n, seq_len + 1)


def block_dataset(blocks, batch_size, seed=0, start_step=0, shuffle=True, repeat=True):
    """((token_ids, padding_mask), next_ids, mask) batches, deterministic per step.

    Data order is a pure function of (seed, global step): pass `start_step`
    on resume and the run sees exactly the batches an uninterrupted run sees.
    """
    n = len(blocks)
    if batch_size > n:
        raise ValueError(f"batch size {batch_size} is larger than the {n} blocks of the corpus")
    per_epoch = n // batch_size

    def order(epoch):
        rng = np.random.default_rng([seed, epoch])
        return rng.permutation(n) if shuffle else np.arange(n)

    def gen():
        step = start_step
        while True:
            epoch, i = divmod(step, per_epoch)
            if not repeat and epoch > 0:
                return
            idx = order(epoch)[i * batch_size : (i + 1) * batch_size]
            b = blocks[idx]
            yield (
                {"token_ids": b[:, :-1], "padding_mask": np.ones_like(b[:, :-1])},
                b[:, 1:],
                np.ones_like(b[:, 1:], dtype=np.float32),
            )
            step += 1

    t = blocks.shape[1] - 1
    spec = (
        {
            "token_ids": tf.TensorSpec((batch_size, t), tf.int32),
            "padding_mask": tf.TensorSpec((batch_size, t), tf.int32),
        },
        tf.TensorSpec((batch_size, t), tf.int32),
        tf.TensorSpec((batch_size, t), tf.float32),
    )
    return tf.data.Dataset.from_generator(gen, output_signature=spec).prefetch(2)

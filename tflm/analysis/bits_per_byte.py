"""An LM's cross-entropy in bits per UTF-8 byte: comparable across tokenizers.

Per-token cross-entropy depends on how finely a tokenizer cuts the text, so
models with different vocabularies are compared on the same text by the
total negative log2-likelihood of all its tokens divided by its UTF-8 bytes.
Each text is scored on its own, every one of its tokens conditioned on a
start token: the tokenizer's BOS (`prefix_ids`, e.g. Gemma) or, for a
tokenizer without one, its end-of-text token (GPT-2's ``<|endoftext|>``, which
separates documents in its training data).
"""

import math

import numpy as np
import tensorflow as tf

from tflm.features.batching import bucket_batches
from tflm.tokenization.text_encoding import pad_batch

LOGIT_ELEMENTS = 2 ** 26  # batch x time x V logits per forward pass (256 MB in float32)


def start_ids(tokenizer):
    """The start context every text is scored after: [BOS], else [end of text]; ValueError without either."""
    if tokenizer.prefix_ids:
        return list(tokenizer.prefix_ids)
    if tokenizer.eos_token_id is not None:
        return [int(tokenizer.eos_token_id)]
    raise ValueError(f"tokenizer {tokenizer.name!r} has neither a BOS nor an end-of-text token to start a text with")


def bits_per_byte(lm, texts):
    """Total -log2 p(tokens) of `texts` under `lm` divided by their UTF-8 bytes.

    Returns a dict: bits_per_byte, nats_per_token, tokens, bytes, texts.
    A text longer than the model's context (with the start token) raises ValueError naming it.
    """
    texts = list(texts)
    if not texts:
        raise ValueError("bits_per_byte needs at least one text")
    start = start_ids(lm.tokenizer)
    ids = [start + list(x) for x in lm.tokenizer.encode_batch(texts)]
    for i, x in enumerate(ids):
        if len(x) > lm.max_sequence_length:
            raise ValueError(f"held-out text {i} has {len(x)} tokens with the start token, more than "
                             f"{lm.name}'s context of {lm.max_sequence_length}")
        if len(x) < len(start) + 1:
            raise ValueError(f"held-out text {i} is empty")
    # Tokens per batch: the logits (tokens x V) stay near LOGIT_ELEMENTS; a longer text runs alone.
    max_tokens = max(max(len(x) for x in ids), LOGIT_ELEMENTS // lm.vocabulary_size)

    @tf.function(reduce_retracing=True)
    def token_nll(tok, mask):
        logits = tf.cast(lm.logits(tok, mask), tf.float32)
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tok[:, 1:], logits=logits[:, :-1])
        return tf.reduce_sum(nll * tf.cast(mask[:, 1:], tf.float32), axis=1)

    total = np.zeros(len(ids), np.float64)
    for idx, padded in bucket_batches([len(x) for x in ids], max_tokens, 4_000_000):
        tok, mask = pad_batch([ids[i] for i in idx], length=padded)
        total[idx] = token_nll(tf.constant(tok), tf.constant(mask)).numpy()
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_tokens = sum(len(x) - len(start) for x in ids)
    nats = float(total.sum())
    return {"bits_per_byte": nats / math.log(2) / n_bytes, "nats_per_token": nats / n_tokens,
            "tokens": n_tokens, "bytes": n_bytes, "texts": len(texts)}

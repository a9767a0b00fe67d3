"""Length-bucketed batches sized by a token and attention-memory budget."""

import numpy as np


def bucket_batches(lengths, max_tokens=8192, max_attention=4_000_000, pad_to_multiple=8):
    """Group example indices into batches of similar length.

    Examples are sorted by length; each batch holds as many as fit both
    ``batch * padded_len <= max_tokens`` and ``batch * padded_len**2 <=
    max_attention`` (attention memory grows with batch x length^2). Lengths
    are padded up to a multiple of `pad_to_multiple` to limit retracing.
    Returns a list of (indices, padded_len); every index appears once.
    """
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    batches, i = [], 0
    while i < len(order):
        longest = int(lengths[order[i]])
        padded = int(-(-longest // pad_to_multiple) * pad_to_multiple)
        size = max(1, min(max_tokens // padded, max_attention // (padded * padded)))
        batches.append((order[i : i + size], padded))
        i += size
    return batches


def padding_ratio(lengths, batches):
    """Padded tokens / real tokens for a batching."""
    real = float(np.sum(lengths))
    return sum(len(idx) * padded for idx, padded in batches) / max(real, 1.0)

"""Length-bucketed batches and packed rows, sized by a token and attention-memory budget."""

import bisect

import numpy as np


def padded_length(longest, pad_to_multiple=8):
    """`longest` rounded up to a multiple of `pad_to_multiple`: the length a batch is padded to."""
    return int(-(-int(longest) // pad_to_multiple) * pad_to_multiple)


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
        padded = padded_length(longest, pad_to_multiple)
        size = max(1, min(max_tokens // padded, max_attention // (padded * padded)))
        batches.append((order[i : i + size], padded))
        i += size
    return batches


def shuffled_length_batches(lengths, batch_size, seed, epoch, window=50):
    """Training batches of one epoch, of similar length, depending only on (seed, epoch, lengths).

    A (seed, epoch)-seeded permutation of the examples drops its last ``n % batch_size``
    (another set every epoch), is cut into windows of `window` batches, each window is sorted
    by length (stable) and cut into batches, and the batches are shuffled by the same generator.
    So every batch draws from a random window of the epoch (SGD's randomness kept) while padding
    falls to that of similar lengths. ``window=1`` keeps the random batches of the permutation
    (in a shuffled order); 0 or None: the permutation's batches in order, unsorted.
    Returns a list of index arrays of `batch_size` each.
    """
    lengths = np.asarray(lengths)
    rng = np.random.RandomState([int(seed) & 0x7FFFFFFF, int(epoch)])
    perm = rng.permutation(len(lengths))
    steps = len(lengths) // batch_size
    perm = perm[: steps * batch_size]
    if not window:
        return [perm[i * batch_size:(i + 1) * batch_size] for i in range(steps)]
    span = int(window) * batch_size
    batches = []
    for start in range(0, len(perm), span):
        chunk = perm[start:start + span]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def padding_ratio(lengths, batches):
    """Padded tokens / real tokens for a batching."""
    real = float(np.sum(lengths))
    return sum(len(idx) * padded for idx, padded in batches) / max(real, 1.0)


def pack_batches(lengths, row_length, max_tokens=8192, max_attention=4_000_000, pad_to_multiple=8):
    """Sequences packed several to a row, in batches of rows; the longer ones bucketed.

    Sequences of at most `row_length` tokens share rows of `row_length` tokens (best-fit
    decreasing: longest first, each into the fullest row it fits); a batch holds
    ``min(max_tokens // row_length, max_attention // row_length**2)`` rows (at least one).
    Longer sequences keep a row each, batched by `bucket_batches`. Returns a list of
    ``(rows, padded_len)``, ``rows[r]`` being the indices placed one after another in row r;
    every index appears once.
    """
    lengths = np.asarray(lengths)
    row_length = int(row_length)
    if row_length < 1:
        raise ValueError(f"row_length must be >= 1, got {row_length}")
    order = np.argsort(-lengths, kind="stable")
    rows, free = [], []  # free: sorted (room left, row) of the rows with room
    for i in order:
        n = int(lengths[i])
        if n > row_length:
            continue
        k = bisect.bisect_left(free, (n, -1))
        room, r = free.pop(k) if k < len(free) else (row_length, len(rows))
        if r == len(rows):
            rows.append([])
        rows[r].append(int(i))
        if room > n:
            bisect.insort(free, (room - n, r))
    size = max(1, min(max_tokens // row_length, max_attention // (row_length * row_length)))
    batches = [(rows[j:j + size], row_length) for j in range(0, len(rows), size)]
    longer = np.flatnonzero(lengths > row_length)
    for idx, padded in bucket_batches(lengths[longer], max_tokens, max_attention, pad_to_multiple):
        batches.append(([[int(longer[i])] for i in idx], padded))
    return batches


def packed_padding(lengths, batches):
    """The fraction of computed tokens that are padding in a `pack_batches` plan."""
    real = float(sum(lengths[i] for rows, _ in batches for row in rows for i in row))
    computed = float(sum(len(rows) * padded for rows, padded in batches))
    return 1.0 - real / max(computed, 1.0)

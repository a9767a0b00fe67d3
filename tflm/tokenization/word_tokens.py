"""The paper's word -> token rule for word features (subset / class / posneg)."""


def word_token_ids(tokenizer, words):
    """Map words to single-token ids with the reference code's rule.

    Each word is tried as ``' ' + w``, ``w`` and ``w + ' '``; every variant
    that is exactly one token, and whose id is not already taken, is kept.
    So 14 words give up to 42 ids.

    Returns:
        (ids, variants): `ids` a list of ints, `variants` a list of
        ``(word, variant_string, id)`` tuples describing what was kept.

    Raises:
        ValueError if no word has a single-token variant.
    """
    ids, variants = [], []
    for w in words:
        for v in (" " + w, w, w + " "):
            enc = tokenizer.encode(v)
            if len(enc) == 1 and enc[0] not in ids:
                ids.append(enc[0])
                variants.append((w, v, enc[0]))
    if not ids:
        raise ValueError(
            f"word list {list(words)!r}: no word has a single-token variant "
            f"(' '+w, w, w+' ') in tokenizer {tokenizer.name!r}"
        )
    return ids, variants

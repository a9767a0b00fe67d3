"""Zero-shot "sentence completion" classifier: the class whose words are the likeliest next word.

With the task's prompt appended (e.g. " This movie is "), the LM's next-word
distribution p_f(s) is read at a few class-word tokens. Each class word was
mapped to up to 3 single tokens by the word -> token rule (``' ' + w``, ``w``,
``w + ' '``; `tflm.tokenization.word_token_ids`), so a class c owns a set of
token ids T(c). The rule:

    score(c) = log sum_{t in T(c)} p_f(t | s)  =  logsumexp_{t in T(c)} log p_f(t | s)
    prediction = argmax_c score(c)    (ties: the lowest class index)

i.e. a class's variants are pooled by summing their probabilities. No
training. Scores may be given as

- "logprobs": log p_f(t | s) (exact class log-probabilities);
- "logits":  f . phi_t (the paper's word features). log p = logit - log Z(s)
  with the same Z(s) for every token of a sentence, so the class scores are
  shifted by a per-row constant and the predictions are identical;
- "probs":   p_f(t | s) (summed directly; zeros give -inf).

Calibrated zero-shot (``calibrate=True``, label-free): each class score is
centred by its mean over the evaluated texts before the argmax,

    score'(c, s) = score(c, s) - mean_{s' in evaluated texts} score(c, s'),

which removes a class's prior lean (e.g. ':)' being ~5 nats likelier than
':(' after any prompt). Logits and log-probabilities still give the same
predictions: they differ by a per-row constant, and so do their centred
scores (up to a constant per table). -inf entries are left out of the mean.
"""

import numpy as np

SCORE_TYPES = ("logprobs", "logits", "probs")


def class_token_map(variants, class_words):
    """{token id: class} from `word_token_ids` variants and the per-class words.

    Args:
        variants: the ``(word, variant_string, id)`` list `word_token_ids` returns.
        class_words: element c is the word (or a list of words) of class c.

    Raises:
        ValueError if a class has no kept token.
    """
    word_class = {}
    for c, words in enumerate(class_words):
        for w in [words] if isinstance(words, str) else list(words):
            if w in word_class and word_class[w] != c:
                raise ValueError(f"word {w!r} is listed for classes {word_class[w]} and {c}")
            word_class[w] = c
    mapping = {}
    for word, _variant, tid in variants:
        if word in word_class:
            mapping[int(tid)] = word_class[word]
    missing = [c for c in range(len(class_words)) if c not in mapping.values()]
    if missing:
        raise ValueError(f"classes {missing} have no single-token class word among the kept variants")
    return mapping


def zero_shot_scores(scores, token_ids, token_classes, num_classes=None, score_type="logprobs"):
    """Per-class scores (N, k): logsumexp of the class's token log-probabilities (see module doc).

    Args:
        scores: (N, T) scores; column t belongs to ``token_ids[t]``.
        token_ids: the T token ids of the columns.
        token_classes: dict token id -> class index (ids absent from it are
            ignored), or a length-T sequence of class indices (-1: ignore).
        num_classes: k (default: 1 + the largest class index used).
        score_type: "logprobs", "logits" or "probs".
    """
    if score_type not in SCORE_TYPES:
        raise ValueError(f"score_type must be one of {SCORE_TYPES}, got {score_type!r}")
    scores = np.asarray(scores, dtype=np.float64)
    token_ids = [int(t) for t in token_ids]
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (N, T), got shape {scores.shape}")
    if scores.shape[1] != len(token_ids):
        raise ValueError(f"scores have {scores.shape[1]} columns but {len(token_ids)} token ids")
    if isinstance(token_classes, dict):
        col_class = np.array([int(token_classes.get(t, -1)) for t in token_ids], dtype=np.int64)
    else:
        col_class = np.asarray(token_classes, dtype=np.int64).reshape(-1)
        if len(col_class) != len(token_ids):
            raise ValueError(f"{len(col_class)} column classes for {len(token_ids)} token ids")
    used = col_class[col_class >= 0]
    if used.size == 0:
        raise ValueError("no column is mapped to a class")
    k = int(used.max()) + 1 if num_classes is None else int(num_classes)
    if used.max() >= k:
        raise ValueError(f"class index {int(used.max())} >= num_classes={k}")
    if score_type == "probs":
        with np.errstate(divide="ignore"):
            scores = np.log(scores)
    out = np.full((scores.shape[0], k), -np.inf)
    for c in range(k):
        cols = scores[:, col_class == c]
        if cols.shape[1] == 0:
            continue  # a class without tokens is never predicted
        m = cols.max(axis=1, keepdims=True)
        safe = np.where(np.isfinite(m), m, 0.0)
        with np.errstate(divide="ignore"):
            out[:, c] = (safe + np.log(np.exp(cols - safe).sum(axis=1, keepdims=True)))[:, 0]
    return out


def calibrate_class_scores(class_scores):
    """Centre each column (class) by its mean over the rows (texts); -inf entries are left out of the mean."""
    class_scores = np.asarray(class_scores, dtype=np.float64)
    finite = np.isfinite(class_scores)
    counts = finite.sum(axis=0)
    means = np.where(finite, class_scores, 0.0).sum(axis=0) / np.maximum(counts, 1)
    return class_scores - np.where(counts > 0, means, 0.0)


def zero_shot_predict(scores, token_ids, token_classes, num_classes=None, score_type="logprobs", calibrate=False):
    """argmax of `zero_shot_scores`, centred per class when `calibrate` (ties: the lowest class index)."""
    class_scores = zero_shot_scores(scores, token_ids, token_classes, num_classes, score_type)
    return np.argmax(calibrate_class_scores(class_scores) if calibrate else class_scores, axis=1)


def zero_shot_probe(scores, labels, token_ids, token_classes, num_classes=None, score_type="logprobs",
                    calibrate=False):
    """Zero-shot accuracy; returns dict(accuracy, predictions, class_scores, n, num_classes, score_type, calibrated).

    With `calibrate`, `class_scores` are the centred scores (see the module doc).
    """
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise ValueError(f"{scores.shape[0] if scores.ndim else 0} score rows but {labels.shape[0]} labels")
    if labels.shape[0] == 0:
        raise ValueError("empty evaluation set")
    class_scores = zero_shot_scores(scores, token_ids, token_classes, num_classes, score_type)
    if calibrate:
        class_scores = calibrate_class_scores(class_scores)
    pred = np.argmax(class_scores, axis=1)
    return {
        "accuracy": float(np.mean(pred == labels)),
        "predictions": pred,
        "class_scores": class_scores,
        "n": int(labels.shape[0]),
        "num_classes": int(class_scores.shape[1]),
        "score_type": score_type,
        "calibrated": bool(calibrate),
    }

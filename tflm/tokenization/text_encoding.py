"""Text (+ prompt) -> token ids, truncated so the prompt and the end of the text survive; padding.

The one implementation of tflm's input rule. It imports nothing from tflm
(only numpy), because `tflm.finetune.export` copies this file next to every
exported SavedModel, where ``predict.py`` runs without tflm installed.

The rule, for a tokenizer without special tokens:

- ``ids(text + prompt)`` (text and prompt tokenized jointly, exactly like
  the reference code) when that fits in `max_length`;
- otherwise ``ids(text)[-(max_length - len(ids(prompt))):] + ids(prompt)``:
  the *start* of the text is dropped and the whole prompt kept (the
  reference truncates text + prompt at 512 tokens from the right, which cuts
  the prompt off long reviews);
- without a prompt: the last `max_length` ids.

`strip_prompt_space` removes the prompt's trailing spaces first (with GPT-2
BPE a trailing space is its own token, id 220, where f then sits).
"""

import numpy as np

RULE = (
    "ids(text + prompt); if longer than max_length: ids(text)[-(max_length - len(ids(prompt))):] "
    "+ ids(prompt) (without a prompt: the last max_length ids); no special tokens"
)


def effective_prompt(prompt, strip_prompt_space=False):
    """The prompt text actually appended (None for none)."""
    if prompt is None:
        return None
    return prompt.rstrip(" ") if strip_prompt_space else prompt


def prompt_ids(encode_batch, prompt, max_length):
    """Ids of the (effective) prompt; ValueError when it is empty or does not fit."""
    if prompt is None:
        return []
    ids = list(encode_batch([prompt])[0])
    if not ids:
        raise ValueError(f"prompt {prompt!r} has no tokens")
    if len(ids) >= max_length:
        raise ValueError(f"prompt {prompt!r} ({len(ids)} tokens) does not fit max_length {max_length}")
    return ids


def encode(encode_batch, texts, prompt=None, max_length=1024, strip_prompt_space=False, chunk=1024,
           prefix_ids=()):
    """Token ids of each text under the rule above.

    Args:
        encode_batch: callable, list of strings -> list of id lists, adding
            no special tokens.
        texts: list of strings.
        prompt: text appended to every text, or None.
        max_length: the most ids per text.
        strip_prompt_space: drop the prompt's trailing spaces.
        chunk: texts tokenized per `encode_batch` call (bounds memory).
        prefix_ids: ids put before every input (a BOS id), counted in
            `max_length`; the rule above runs on ``max_length - len(prefix_ids)``.

    Returns (list of int32 arrays, number of truncated texts).
    """
    prefix_ids = [int(i) for i in prefix_ids]
    max_length = int(max_length) - len(prefix_ids)
    if max_length < 1:
        raise ValueError(f"max_length must be >= {1 + len(prefix_ids)}, got {max_length + len(prefix_ids)}")
    prompt = effective_prompt(prompt, strip_prompt_space)
    p_ids = prompt_ids(encode_batch, prompt, max_length)
    texts = list(texts)
    out, truncated = [], 0
    for start in range(0, len(texts), chunk):
        part = texts[start:start + chunk]
        joint = encode_batch([t + (prompt or "") for t in part])
        long = [j for j, ids in enumerate(joint) if len(ids) > max_length]
        text_ids = dict(zip(long, encode_batch([part[j] for j in long]))) if prompt is not None and long else {}
        for j, ids in enumerate(joint):
            if not ids:
                raise ValueError(f"text {start + j} has no tokens: {part[j]!r}")
            if len(ids) > max_length:
                truncated += 1
                if prompt is None:
                    ids = ids[-max_length:]
                else:
                    ids = list(text_ids[j][-(max_length - len(p_ids)):]) + p_ids
            out.append(np.asarray(prefix_ids + list(ids), dtype=np.int32))
    return out, truncated


def pad_batch(id_lists, pad_id=0, length=None):
    """Right-pad lists of ids into (token_ids, padding_mask) int32 arrays (mask 1 = real token)."""
    n = len(id_lists)
    length = length or max((len(x) for x in id_lists), default=0)
    token_ids = np.full((n, length), pad_id, dtype=np.int32)
    mask = np.zeros((n, length), dtype=np.int32)
    for i, ids in enumerate(id_lists):
        if len(ids) > length:
            raise ValueError(f"sequence {i} has {len(ids)} ids, more than the padded length {length}")
        token_ids[i, : len(ids)] = ids
        mask[i, : len(ids)] = 1
    return token_ids, mask

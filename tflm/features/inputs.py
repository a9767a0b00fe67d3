"""Text (+ prompt) -> token ids, truncated so the prompt and the end of the text survive."""

import numpy as np


def encode_texts(tokenizer, texts, prompt=None, max_length=1024, strip_prompt_space=False):
    """Token ids of ``text + prompt`` for each text, with no special tokens.

    The reference code truncates text + prompt at 512 tokens from the right,
    which cuts the prompt off long reviews. Here, when ``text + prompt`` is
    longer than `max_length`, the *start* of the text is dropped and the whole
    prompt kept: ``ids(text)[-(max_length - len(ids(prompt))):] + ids(prompt)``.
    When it fits, ``text + prompt`` is tokenized jointly, exactly like the
    reference. `strip_prompt_space` removes the prompt's trailing space (with
    GPT-2 BPE the trailing space is its own token, id 220, where f then sits).

    Returns (list of id lists, number of truncated texts).
    """
    if prompt is not None:
        if strip_prompt_space:
            prompt = prompt.rstrip(" ")
        prompt_ids = tokenizer.encode(prompt)
        if not prompt_ids:
            raise ValueError(f"prompt {prompt!r} has no tokens")
        if len(prompt_ids) >= max_length:
            raise ValueError(f"prompt {prompt!r} ({len(prompt_ids)} tokens) does not fit max_length {max_length}")
    out, truncated = [], 0
    for i, ids in enumerate(_encode_chunked(tokenizer, [t + (prompt or "") for t in texts])):
        if not ids:
            raise ValueError(f"text {i} has no tokens: {texts[i]!r}")
        if len(ids) > max_length:
            truncated += 1
            if prompt is None:
                ids = ids[-max_length:]
            else:
                text_ids = tokenizer.encode(texts[i])
                ids = list(text_ids[-(max_length - len(prompt_ids)) :]) + prompt_ids
        out.append(np.asarray(ids, dtype=np.int32))
    return out, truncated


def _encode_chunked(tokenizer, texts, chunk=1024):
    """Ids of many texts without holding every `tokenizers.Encoding` at once."""
    for start in range(0, len(texts), chunk):
        yield from tokenizer.encode_batch(texts[start:start + chunk])

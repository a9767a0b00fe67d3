#!/usr/bin/env python
"""Classify texts with the SavedModel in this folder (needs tensorflow, numpy, tokenizers; not tflm).

    python predict.py "text one" "text two"     # or one text per line on stdin
Prints one JSON line per text: {"label": ..., "probabilities": [...]}.

`tflm.finetune.export` copies this file and ``text_encoding.py`` (the input
rule, shared with `tflm.tokenization.TextEncoder`) next to every export.
"""

import importlib.util
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

if __package__:  # imported from the tflm package
    from tflm.tokenization import text_encoding
else:  # a copy in an export folder: text_encoding.py lies next to this file
    _spec = importlib.util.spec_from_file_location("text_encoding", os.path.join(HERE, "text_encoding.py"))
    text_encoding = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(text_encoding)


def load(path=HERE):
    """(metadata, tokenizers.Tokenizer, serving signature) of an export folder."""
    import tensorflow as tf
    import tokenizers

    try:  # only needed when the export has the optional raw-text endpoint
        import tensorflow_text  # noqa: F401
    except ImportError:
        pass

    with open(os.path.join(path, "tflm_export.json"), encoding="utf-8") as f:
        meta = json.load(f)
    tok = tokenizers.Tokenizer.from_file(os.path.join(path, meta["tokenizer"]))
    tok.no_padding()
    tok.no_truncation()
    fn = tf.saved_model.load(path).signatures[meta["signature"]]
    return meta, tok, fn


def encode(tok, meta, texts):
    """Token ids of each text + prompt, keeping the prompt and the end of the text (int32 arrays)."""
    def encode_batch(batch):
        return [e.ids for e in tok.encode_batch(list(batch), add_special_tokens=False)]

    ids, _ = text_encoding.encode(encode_batch, list(texts), meta.get("prompt"), int(meta["max_length"]),
                                  bool(meta.get("strip_prompt_space")), prefix_ids=meta.get("prefix_ids", ()))
    return ids


def predict(texts, path=HERE, batch_size=32, loaded=None):
    """Class probabilities, a (len(texts), num_classes) float32 array."""
    meta, tok, fn = loaded or load(path)
    texts = list(texts)
    ids = encode(tok, meta, texts) if texts else []
    out = []
    for i in range(0, len(ids), batch_size):
        token_ids, mask = text_encoding.pad_batch(ids[i : i + batch_size], meta.get("pad_id", 0))
        out.append(fn(token_ids=token_ids, padding_mask=mask)["probabilities"].numpy())
    return np.concatenate(out) if out else np.zeros((0, meta["num_classes"]), np.float32)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    texts = argv or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    loaded = load(HERE)
    for p in predict(texts, loaded=loaded):
        print(json.dumps({"label": loaded[0]["label_names"][int(np.argmax(p))], "probabilities": p.tolist()}))


if __name__ == "__main__":
    main()

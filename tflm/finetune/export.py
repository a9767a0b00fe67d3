"""Export classifiers as TF SavedModels: fine-tuned `Classifier`s (linear probes: `tflm.probes.export`).

The contract (two steps):

1. text -> ids with the model's exact tokenizer (``tokenizer.json`` in the
   export folder, read by the Hugging Face `tokenizers` library), applying
   the prompt and truncation recorded in ``tflm_export.json`` (the
   `TextEncoder` rule, `tflm.tokenization.text_encoding`):
   ``ids(text + prompt)``; if longer than ``max_length``,
   ``ids(text)[-(max_length - len(ids(prompt))):] + ids(prompt)`` (without a
   prompt: the last ``max_length`` ids); no special tokens;
2. ``signatures["serving_default"]`` (endpoint ``serve``):
   ``token_ids`` int32 [batch, time], ``padding_mask`` int32 [batch, time]
   (1 for real tokens, 0 for padding; any padding side) ->
   ``{"probabilities": float32 [batch, num_classes]}``.

``predict.py`` in the folder (a copy of `tflm.finetune.predict`, with the
``text_encoding.py`` it imports) does both with only `tensorflow`, `numpy`
and `tokenizers` installed (no tflm), and ``README.md`` explains it.

Serving raw strings in one graph. The exact tokenizer cannot be part of a
TensorFlow graph: `tokenizers` is a Rust library called from Python, and
the only way to call Python from a graph, ``tf.py_function``, is not
serialized: a SavedModel containing one saves, but calling it in a fresh
process fails with ``Could not find callback with key=pyfunc_0 in the
registry`` (checked with TF 2.21). keras-hub's `BytePairTokenizer`, by
contrast, is made of TF ops (tf_text regex split, lookup tables, a
``tf.while_loop`` of merges) and does export; checked in TF 2.21 /
keras-hub 0.32 / tensorflow-text 2.21:

- the SavedModel loads only in a process that ran ``import
  tensorflow_text`` first (its ``RegexSplitWithOffsets`` op is not in core
  TF: ``Op type not registered 'RegexSplitWithOffsets'`` otherwise);
- it is GPT-2 byte-level BPE with GPT-2's split regex only (not the Llama-3
  tokenizers, whose regex differs);
- in-graph ids (prompt and truncation included) equal the exact
  tokenizer's on all 9,613 SST-2 sentences, 3,000 AG News test texts and
  the 2,500 IMDb dev reviews, with and without the movie prompt, at
  max_length 1024 and 32; but not always: a
  run of newlines followed by a letter ("c\\n\\nd") becomes one token (628)
  instead of GPT-2's two (198, 198), because keras-hub emulates the regex
  lookahead ``\\s+(?!\\S)`` (RE2 has no lookaheads) slightly differently;
- its merge cache is a ``MutableHashTable`` that grows with every new word
  a server sees.

So the raw-string endpoint is opt-in (``raw_text=True``, or "auto": added
for GPT-2 BPE tokenizers when tensorflow_text is importable; off by default
because a SavedModel holding it cannot be loaded at all, not even its
``serving_default``, unless ``tensorflow_text`` is imported first): an extra
endpoint ``serve_text`` (``text``: tf.string [batch] ->
``{"probabilities"}``), with the same prompt and truncation rule, the
mismatch count against the exact tokenizer on `check_texts` recorded in
``tflm_export.json``, and the two-step ``serving_default`` signature kept
as the reference contract. (keras-hub's own GPT-2 tokenizer class, used
eagerly on Python strings, is not exact either: see
`tflm.tokenization.tokenizer`; and keras-hub issues #2015 / #1629 report
export failures of its tokenizers in other configurations.)
"""

import json
import os
import shutil

import keras
import numpy as np

from tflm.finetune import predict as predict_module
from tflm.atomic import atomic_path
from tflm.report import write_json
from tflm.tokenization import text_encoding
from tflm.tokenization.text_encoder import TextEncoder

EXPORT_FORMAT = "tflm-export-v1"
META_FILE = "tflm_export.json"
SIGNATURE = "serving_default"
ENDPOINT = "serve"
TEXT_ENDPOINT = "serve_text"


# --- shared writing -------------------------------------------------------------------------
def _token_specs():
    import tensorflow as tf

    return [
        tf.TensorSpec([None, None], tf.int32, name="token_ids"),
        tf.TensorSpec([None, None], tf.int32, name="padding_mask"),
    ]


def _gpt2_bpe_parts(tokenizer):
    """(vocabulary dict, merges list) when `tokenizer` is GPT-2 style byte-level BPE, else None."""
    try:
        spec = json.loads(tokenizer.to_json())
    except Exception:  # noqa: BLE001 - any tokenizer without a JSON form
        return None
    model, pre = spec.get("model") or {}, spec.get("pre_tokenizer") or {}
    if model.get("type") != "BPE" or pre.get("type") != "ByteLevel" or not pre.get("use_regex", True):
        return None
    if pre.get("add_prefix_space") or spec.get("normalizer") or spec.get("added_tokens"):
        return None
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return dict(model["vocab"]), merges


def _want_raw_text(raw_text, tokenizer):
    if raw_text is False:
        return None
    parts = _gpt2_bpe_parts(tokenizer)
    if parts is None:
        if raw_text is True:
            raise ValueError("raw-text serving needs a GPT-2 byte-level BPE tokenizer (keras-hub BytePairTokenizer)")
        return None
    try:
        import tensorflow_text  # noqa: F401
    except ImportError:
        if raw_text is True:
            raise ValueError("raw-text serving needs tensorflow_text (pip install tensorflow-text)") from None
        return None
    return parts


class _GraphTextEncoder:
    """A `TextEncoder` as TF ops (keras-hub's BytePairTokenizer): text -> (token_ids, padding_mask).

    The same rule as `tflm.tokenization.text_encoding.encode`, written with
    ragged tensors so it runs inside the SavedModel; its ids are compared
    with the `TextEncoder`'s on export (`_check_encoder`) and in the tests.
    """

    def __init__(self, parts, encoder):
        import keras_hub
        import tensorflow as tf

        vocab, merges = parts
        self.tokenizer = keras_hub.tokenizers.BytePairTokenizer(
            vocabulary=vocab, merges=merges, unsplittable_tokens=[], name="text_tokenizer"
        )
        self.prompt = encoder.effective_prompt or ""
        self.prompt_ids = list(encoder.prompt_ids)
        self.max_length = encoder.max_length
        self.pad_id = encoder.pad_id
        # Eagerly, keras-hub tokenizers may return Python lists; run in a graph, as served.
        self.encode = tf.function(self.__call__, input_signature=[tf.TensorSpec([None], tf.string)])

    def _ids(self, texts):
        import tensorflow as tf

        ids = self.tokenizer(texts)
        if not isinstance(ids, tf.RaggedTensor):  # keras-hub returns dense rows when all have one length
            ids = tf.RaggedTensor.from_tensor(ids)
        return tf.cast(ids, tf.int32)

    def __call__(self, texts):
        import tensorflow as tf

        joint = self._ids(texts + self.prompt) if self.prompt else self._ids(texts)
        n = tf.shape(texts)[0]
        keep = self.max_length - len(self.prompt_ids)
        if self.prompt:
            text_ids = self._ids(texts)
            prompt = tf.RaggedTensor.from_tensor(tf.tile(tf.constant([self.prompt_ids], tf.int32), [n, 1]))
            trunc = tf.concat([text_ids[:, -keep:], prompt], axis=1)
        else:
            trunc = joint[:, -self.max_length:]
        joint_len = joint.row_lengths()
        too_long = joint_len > self.max_length
        lengths = tf.where(too_long, trunc.row_lengths(), joint_len)
        width = tf.cast(tf.reduce_max(lengths), tf.int32)
        shape = tf.stack([n, width])
        a = joint.to_tensor(default_value=self.pad_id)[:, :width]
        a = tf.pad(a, [[0, 0], [0, width - tf.shape(a)[1]]], constant_values=self.pad_id)
        b = trunc.to_tensor(default_value=self.pad_id, shape=shape)
        ids = tf.where(too_long[:, None], b, a)
        mask = tf.sequence_mask(lengths, width, dtype=tf.int32)
        return ids, mask


def _write_export(path, probabilities_fn, trackables, encoder, meta, raw_parts=None, check_texts=None):
    """Write the SavedModel (+ optional text endpoint), tokenizer, metadata, README, predict.py."""
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    for t in trackables:
        archive.track(t)

    def serve(token_ids, padding_mask):
        return {"probabilities": probabilities_fn(token_ids, padding_mask)}

    archive.add_endpoint(ENDPOINT, serve, input_signature=_token_specs())
    meta.update({"prompt": encoder.prompt, "strip_prompt_space": encoder.strip_prompt_space,
                 "max_length": encoder.max_length, "pad_id": encoder.pad_id,
                 "prefix_ids": list(encoder.prefix_ids)})
    if raw_parts is not None:
        graph_encoder = _GraphTextEncoder(raw_parts, encoder)
        graph_encoder.encode(tf.constant(["a"]))  # builds the tokenizer layer (ExportArchive tracks built layers only)
        archive.track(graph_encoder.tokenizer)

        def serve_text(text):
            ids, mask = graph_encoder(text)
            return {"probabilities": probabilities_fn(ids, mask)}

        archive.add_endpoint(TEXT_ENDPOINT, serve_text, input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        meta["raw_text_endpoint"] = TEXT_ENDPOINT
        if check_texts:
            meta["raw_text_check"] = _check_encoder(graph_encoder, encoder, list(check_texts))
    else:
        meta["raw_text_endpoint"] = None
    with atomic_path(path, directory=True) as tmp:
        _write_export_files(tmp, archive, encoder, meta)
    return path


def _write_export_files(path, archive, encoder, meta):
    archive.write_out(path, verbose=False)
    encoder.tokenizer.save(path)
    meta.update({
        "format": EXPORT_FORMAT,
        "signature": SIGNATURE,
        "endpoint": ENDPOINT,
        "inputs": {"token_ids": "int32 [batch, time]", "padding_mask": "int32 [batch, time] (1 = real token)"},
        "outputs": {"probabilities": "float32 [batch, num_classes]"},
        "tokenizer": "tokenizer.json",
        "truncation": text_encoding.RULE,
    })
    write_json(os.path.join(path, META_FILE), meta)
    copy_predict_py(path)
    with open(os.path.join(path, "README.md"), "w", encoding="utf-8") as f:  # inside the atomic folder
        f.write(_readme(meta))


def copy_predict_py(path):
    """Copy ``predict.py`` (`tflm.finetune.predict`) and the ``text_encoding.py`` it imports into `path`."""
    for module in (predict_module, text_encoding):
        shutil.copyfile(module.__file__, os.path.join(path, os.path.basename(module.__file__)))


def _check_encoder(graph_encoder, encoder, texts):
    """How many texts the in-graph encoder gives other ids than `encoder`."""
    import tensorflow as tf

    ref, _ = encoder.encode(texts)
    mismatches = 0
    for i in range(0, len(texts), 256):
        ids, mask = graph_encoder.encode(tf.constant(texts[i : i + 256]))
        ids, mask = np.asarray(ids), np.asarray(mask)
        for j, r in enumerate(ref[i : i + 256]):
            if list(ids[j][mask[j] == 1]) != list(r):
                mismatches += 1
    return {"texts": len(texts), "mismatches": mismatches}


# --- fine-tuned classifiers -------------------------------------------------------------------
def export_classifier(model, path, tokenizer, label_names=None, prompt=None, strip_prompt_space=False,
                      max_length=1024, raw_text=False, check_texts=None, extra=None):
    """Export a `Classifier` (logits or probabilities) as a SavedModel; see the module docstring.

    Args:
        model: a `tflm.finetune.Classifier`.
        path: output folder.
        tokenizer: the model's `tflm.tokenization.Tokenizer` (saved as tokenizer.json).
        label_names: names of the classes, in order.
        prompt / strip_prompt_space / max_length: how texts were encoded in
            training (recorded for step 1; used by the raw-text endpoint).
        raw_text: add the ``serve_text`` endpoint: "auto", True or False.
        check_texts: texts to compare the in-graph tokenizer against the
            exact one on (count recorded in tflm_export.json).
        extra: more JSON-serializable metadata.
    """
    from keras import ops

    def probabilities(token_ids, padding_mask):
        out = model({"token_ids": token_ids, "padding_mask": padding_mask}, training=False)
        return out if getattr(model, "output_probabilities", False) else ops.softmax(out, axis=-1)

    num_classes = int(model.outputs[0].shape[-1])
    meta = {
        "kind": "classifier",
        "num_classes": num_classes,
        "label_names": list(label_names) if label_names is not None else [str(i) for i in range(num_classes)],
        **(extra or {}),
    }
    encoder = TextEncoder(tokenizer, prompt, max_length, strip_prompt_space)
    raw = _want_raw_text(raw_text, tokenizer)
    return _write_export(path, probabilities, [model], encoder, meta, raw, check_texts)


# --- files written next to the SavedModel ---------------------------------------------------
def _readme(meta):
    text_note = (
        f"\nRaw strings in one graph: endpoint `{TEXT_ENDPOINT}` (`text`: tf.string [batch]). It needs "
        "`import tensorflow_text` before `tf.saved_model.load`, uses keras-hub's in-graph GPT-2 BPE, which "
        "differs from the exact tokenizer on rare inputs (a run of newlines followed by a letter); "
        f"check on export: {meta.get('raw_text_check')}. `serving_default` + tokenizer.json is the reference.\n"
        if meta.get("raw_text_endpoint") else
        "\nNo raw-string endpoint: the exact tokenizer (Hugging Face `tokenizers`, Rust) cannot run inside a "
        "TensorFlow graph; tokenize first (step 1).\n"
    )
    return f"""# tflm exported {meta['kind']}

Classes: {meta['label_names']}. Prompt appended to every text: {meta['prompt']!r}
(strip trailing space: {meta['strip_prompt_space']}). Max length: {meta['max_length']} tokens.

Two steps:
1. ids: `tokenizer.json` (Hugging Face `tokenizers`), no special tokens, {text_encoding.RULE}.
2. `tf.saved_model.load(this_folder).signatures["{SIGNATURE}"](token_ids=..., padding_mask=...)`
   with int32 [batch, time] tensors (pad id 0, mask 1 = real token) returns
   `{{"probabilities": float32 [batch, {meta['num_classes']}]}}`.
{text_note}
Both steps, needing only tensorflow, numpy and tokenizers:

```
python predict.py "a gorgeous, witty film" "a dull mess"      # or texts on stdin, one per line
```
```python
import importlib.util
spec = importlib.util.spec_from_file_location("predict", "<this folder>/predict.py")
predict = importlib.util.module_from_spec(spec); spec.loader.exec_module(predict)
probs = predict.predict(["a gorgeous, witty film"], "<this folder>")
```
All settings are in `{META_FILE}`.
"""

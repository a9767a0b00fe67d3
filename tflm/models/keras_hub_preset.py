"""keras-hub preset directories (local, or downloaded by `tflm.models.specs`)."""

import json
import os

import keras
import keras_hub
import numpy as np

from tflm.atomic import atomic_path
from tflm.models.language_model import LanguageModel
from tflm.tokenization import Tokenizer

HEAD_CONFIG = "tflm_head.json"
HEAD_WEIGHTS = "tflm_head.weights.npz"
TOKENIZER_DIR = "tflm_tokenizer"
MODEL_CARD = "model_card.json"
KERAS_HUB_TOKENIZER_CONFIG = "tokenizer.json"


def _llama3_tokenizer(vocab_path, merges_path):
    """Llama 3 byte-level BPE from keras-hub's vocabulary.json + merges.txt (the GGUF loader's rule)."""
    import tokenizers
    from tokenizers import pre_tokenizers

    from tflm.models.gguf import _LLAMA3_PATTERN

    with open(vocab_path, encoding="utf-8") as f:
        vocab = json.load(f)
    with open(merges_path, encoding="utf-8") as f:
        merges = [tuple(line.split(" ")) for line in f.read().splitlines() if line and not line.startswith("#version")]
    backend = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(tokenizers.Regex(_LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    backend.decoder = tokenizers.decoders.ByteLevel()
    specials = [t for t in vocab if t.startswith("<|") and t.endswith("|>")]
    backend.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False) for t in specials])
    return Tokenizer(backend, "llama3-bpe (preset assets)", eos_token_id=vocab.get("<|end_of_text|>"))


def _tokenizer_from_preset_dir(directory):
    ours = os.path.join(directory, TOKENIZER_DIR)
    if os.path.isfile(os.path.join(ours, "tokenizer.json")):
        return Tokenizer.load(ours)
    config_path = os.path.join(directory, KERAS_HUB_TOKENIZER_CONFIG)
    kind = None
    if os.path.isfile(config_path):
        with open(config_path) as f:
            kind = json.load(f).get("class_name")
    assets = os.path.join(directory, "assets", "tokenizer")
    vocab, merges = os.path.join(assets, "vocabulary.json"), os.path.join(assets, "merges.txt")
    if os.path.isfile(vocab) and os.path.isfile(merges):
        if kind in (None, "GPT2Tokenizer"):
            return Tokenizer.from_gpt2_files(vocab, merges, name="gpt2-bpe (preset assets)")
        if kind == "Llama3Tokenizer":
            return _llama3_tokenizer(vocab, merges)
    raise ValueError(
        f"{directory}: no tokenizer tflm can apply exactly (expected {TOKENIZER_DIR}/tokenizer.json, or "
        f"assets/tokenizer/vocabulary.json + merges.txt of a GPT2Tokenizer or Llama3Tokenizer; "
        f"{KERAS_HUB_TOKENIZER_CONFIG} names {kind!r})"
    )


def load_preset_dir(directory, name=None):
    """A local keras-hub preset directory, plus tflm's untied head and card if present."""
    cfg_path = os.path.join(directory, "config.json")
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"{directory}: not a keras-hub preset (no config.json)")
    backbone = keras_hub.models.Backbone.from_preset(directory, dtype="float32")
    head = None
    if os.path.isfile(os.path.join(directory, HEAD_CONFIG)):
        with open(os.path.join(directory, HEAD_CONFIG)) as f:
            head = keras.saving.deserialize_keras_object(json.load(f))
        if not head.built:
            head.build()
        with np.load(os.path.join(directory, HEAD_WEIGHTS)) as z:
            head.set_weights([z[f"w{i}"].astype("float32") for i in range(len(z.files))])
    card = {}
    if os.path.isfile(os.path.join(directory, MODEL_CARD)):
        with open(os.path.join(directory, MODEL_CARD)) as f:
            card = json.load(f)
    return LanguageModel(
        backbone,
        _tokenizer_from_preset_dir(directory),
        head=head,
        name=name or os.path.basename(os.path.normpath(directory)),
        source="keras-hub-preset",
        max_sequence_length=card.get("max_sequence_length"),
        metadata={"objective": card["objective"]} if "objective" in card else {},
    )


def save_preset_dir(lm, directory, weights_dtype="float32", model_card=None):
    """Write `lm` so `load_lm(directory)` reads it back.

    keras-hub preset files (config.json, model.weights.h5, a GPT-2 tokenizer
    config with its vocabulary assets when available), tflm's exact tokenizer,
    the untied head (config + weights) and a JSON model card.
    `weights_dtype="float16"` halves the size on disk; loading casts back to float32.
    The folder is written atomically (`tflm.atomic.atomic_path`): it replaces
    `directory` whole once complete, and a failed write leaves `directory` as it was.
    """
    with atomic_path(directory, directory=True) as tmp:
        _write_preset(lm, tmp, weights_dtype, model_card)
    return directory


def _write_preset(lm, directory, weights_dtype, model_card):
    backbone = lm.backbone
    if weights_dtype != backbone.dtype_policy.variable_dtype:
        cfg = backbone.get_config()
        cfg["dtype"] = weights_dtype
        copy = type(backbone).from_config(cfg)
        copy.set_weights([keras.ops.convert_to_numpy(w).astype(weights_dtype) for w in backbone.get_weights()])
        backbone = copy
    backbone.save_to_preset(directory)
    if hasattr(backbone, "tie_word_embeddings"):
        # keras-hub 0.32's Llama3Backbone.get_config() omits tie_word_embeddings,
        # so a tied model would not reload; record it in the preset config.
        cfg_path = os.path.join(directory, "config.json")
        with open(cfg_path) as f:
            cfg = json.load(f)
        cfg["config"]["tie_word_embeddings"] = bool(backbone.tie_word_embeddings)
        with open(cfg_path, "w") as f:
            json.dump(cfg, f, indent=4)
    lm.tokenizer.save(os.path.join(directory, TOKENIZER_DIR))
    if lm.head is not None:
        with open(os.path.join(directory, HEAD_CONFIG), "w") as f:
            json.dump(keras.saving.serialize_keras_object(lm.head), f, indent=1)
        weights = [np.asarray(w).astype(weights_dtype) for w in lm.head.get_weights()]
        np.savez(os.path.join(directory, HEAD_WEIGHTS), **{f"w{i}": w for i, w in enumerate(weights)})
    card = dict(model_card or {})
    card.setdefault("max_sequence_length", lm.max_sequence_length)
    with open(os.path.join(directory, MODEL_CARD), "w") as f:
        json.dump(card, f, indent=1)

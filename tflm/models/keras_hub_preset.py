"""keras-hub presets: built-in names (downloaded) and local preset directories."""

import json
import os
import socket

import keras
import keras_hub
import numpy as np

from tflm.models.language_model import LanguageModel
from tflm.tokenization import Tokenizer

GPT2_PRESETS = ("gpt2_base_en", "gpt2_medium_en", "gpt2_large_en", "gpt2_extra_large_en")
HEAD_CONFIG = "tflm_head.json"
HEAD_WEIGHTS = "tflm_head.weights.npz"
TOKENIZER_DIR = "tflm_tokenizer"
MODEL_CARD = "model_card.json"
OFFLINE_HINT = (
    "other model sources that work offline: a local keras-hub preset directory "
    "(what save_to_preset writes), a Hugging Face checkpoint directory "
    "(config.json + model.safetensors + tokenizer.json), a llama.cpp .gguf file, "
    "a model trained with `tflm pretrain`, or a tiny random model (tiny-gpt2)"
)


def _network_reachable(host="www.kaggle.com", port=443, timeout=3.0):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tokenizer_from_preset_dir(directory):
    ours = os.path.join(directory, TOKENIZER_DIR)
    if os.path.isfile(os.path.join(ours, "tokenizer.json")):
        return Tokenizer.load(ours)
    assets = os.path.join(directory, "assets", "tokenizer")
    vocab, merges = os.path.join(assets, "vocabulary.json"), os.path.join(assets, "merges.txt")
    if os.path.isfile(vocab) and os.path.isfile(merges):
        return Tokenizer.from_gpt2_files(vocab, merges, name="gpt2-bpe (preset assets)")
    raise ValueError(
        f"{directory}: no tokenizer tflm can apply exactly (expected {TOKENIZER_DIR}/tokenizer.json "
        "or GPT-2 BPE assets/tokenizer/vocabulary.json + merges.txt)"
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


def load_builtin_preset(preset):
    """A keras-hub built-in GPT-2 preset (downloads from Kaggle; needs a network)."""
    if not _network_reachable():
        raise ConnectionError(
            f"cannot download keras-hub preset {preset!r}: no network "
            f"(Kaggle unreachable). {OFFLINE_HINT}"
        )
    backbone = keras_hub.models.Backbone.from_preset(preset)
    from tflm._compat import keras_hub_get_file

    vocab = keras_hub_get_file(preset, "assets/tokenizer/vocabulary.json")
    merges = keras_hub_get_file(preset, "assets/tokenizer/merges.txt")
    tokenizer = Tokenizer.from_gpt2_files(vocab, merges, name=f"gpt2-bpe ({preset})")
    return LanguageModel(backbone, tokenizer, name=preset, source="keras-hub-builtin")


def save_preset_dir(lm, directory, weights_dtype="float32", model_card=None):
    """Write `lm` so `load_lm(directory)` reads it back.

    keras-hub preset files (config.json, model.weights.h5, a GPT-2 tokenizer
    config with its vocabulary assets when available), tflm's exact tokenizer,
    the untied head (config + weights) and a JSON model card.
    `weights_dtype="float16"` halves the size on disk; loading casts back to float32.
    """
    os.makedirs(directory, exist_ok=True)
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

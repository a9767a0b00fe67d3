"""`load_lm(spec)`: one entry point for every model source."""

import os

from tflm.models.keras_hub_preset import (
    GPT2_PRESETS,
    OFFLINE_HINT,
    load_builtin_preset,
    load_preset_dir,
)
from tflm.models.language_model import check_dtype
from tflm.models.tiny import TINY_SPECS, load_tiny


def load_lm(spec, dtype="float32"):
    """Load a causal LM as a `tflm.models.LanguageModel` computing in `dtype`.

    `dtype` ("float32", "bfloat16", "float16") is applied as a Keras dtype
    policy after loading (`LanguageModel.with_dtype`).

    `spec` is one of: a keras-hub GPT-2 preset name (`gpt2_base_en`, ...,
    needs a network); a local keras-hub preset directory (including models
    written by `tflm pretrain`); a Hugging Face checkpoint directory
    (config.json + *.safetensors + tokenizer.json; GPT-2 and Llama family);
    a llama.cpp `.gguf` file (Llama family); or `tiny-gpt2`,
    `tiny-gpt2-untied`, `tiny-llama` (random, for tests).
    """
    check_dtype(dtype)
    return _load_float32(str(spec)).with_dtype(dtype)


def resolve_lm(model, dtype=None):
    """`model` as a `LanguageModel`: a spec is loaded (in `dtype`, default float32);
    a `LanguageModel` is kept, or rebuilt in `dtype` when one is given."""
    if isinstance(model, str):
        return load_lm(model, dtype or "float32")
    return model.with_dtype(dtype) if dtype else model


def _load_float32(spec):
    if spec in TINY_SPECS:
        return load_tiny(spec)
    if spec in GPT2_PRESETS:
        return load_builtin_preset(spec)
    if spec.lower().endswith(".gguf"):
        if not os.path.isfile(spec):
            raise FileNotFoundError(f"GGUF file not found: {spec}")
        from tflm.models.gguf import load_gguf

        return load_gguf(spec)
    if os.path.isdir(spec):
        if os.path.isfile(os.path.join(spec, "metadata.json")) and os.path.isfile(
            os.path.join(spec, "config.json")
        ):
            return load_preset_dir(spec)
        if os.path.isfile(os.path.join(spec, "config.json")):
            from tflm.models.hugging_face import load_hf_dir

            return load_hf_dir(spec)
        raise ValueError(f"{spec}: a directory but neither a keras-hub preset nor a Hugging Face checkpoint (no config.json)")
    if os.path.exists(spec):
        raise ValueError(f"{spec}: unsupported model file (expected a directory or a .gguf file)")
    raise FileNotFoundError(
        f"model {spec!r} not found: not a path, not a tiny model {TINY_SPECS}, "
        f"not a keras-hub GPT-2 preset {GPT2_PRESETS}; {OFFLINE_HINT}"
    )


def load_tokenizer(spec):
    """The model's exact tokenizer, without building the network when possible."""
    spec = str(spec)
    if spec in TINY_SPECS:
        from tflm.tokenization import gpt2_tokenizer

        return gpt2_tokenizer()
    if os.path.isdir(spec) and os.path.isfile(os.path.join(spec, "metadata.json")):
        from tflm.models.keras_hub_preset import _tokenizer_from_preset_dir

        return _tokenizer_from_preset_dir(spec)
    return load_lm(spec).tokenizer

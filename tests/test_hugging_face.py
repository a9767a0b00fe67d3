"""Hugging Face checkpoint loading: numerical parity with transformers, and bad input."""

import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

import tflm
from tflm.models.hugging_face import load_hf_dir

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

VOCAB = 300  # embedding rows; the byte-level tokenizer below has 256 + 3 merges
TOL = 1e-4


def write_byte_tokenizer(directory):
    """A small byte-level BPE tokenizer.json (259 tokens), GPT-2 style."""
    alphabet = tokenizers.pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    merges = [("t", "h"), ("th", "e"), ("Ġ", "the")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    tok.save(os.path.join(directory, "tokenizer.json"))
    return tok


def _perturb(model, seed):
    """Random (not init-default) norm gains/biases, so a mis-ported one shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=g))


def write_gpt2(directory, seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = dict(
        vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4,
        n_inner=48, activation_function="gelu_new", layer_norm_epsilon=1e-5,
        eos_token_id=5, bos_token_id=5,
    )
    cfg.update(overrides)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**cfg)).eval()
    _perturb(model, seed)
    model.save_pretrained(directory, safe_serialization=True)
    write_byte_tokenizer(directory)
    return model


def write_llama(directory, seed=0, model_type="llama", **overrides):
    torch.manual_seed(seed)
    cfg = dict(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True,
        eos_token_id=2, bos_token_id=1,
    )
    cfg.update(overrides)
    if model_type == "mistral":
        config = transformers.MistralConfig(**cfg)
        model = transformers.MistralForCausalLM(config)
    else:
        config = transformers.LlamaConfig(**cfg)
        model = transformers.LlamaForCausalLM(config)
    model.eval()
    _perturb(model, seed)
    model.save_pretrained(directory, safe_serialization=True)
    write_byte_tokenizer(directory)
    return model


def _batch(seed=0):
    """Right-padded batch with mixed lengths (pads are id 0)."""
    rng = np.random.default_rng(seed)
    lengths = [12, 7, 3]
    ids = np.zeros((3, 12), dtype=np.int32)
    mask = np.zeros((3, 12), dtype=np.int32)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(3, 259, size=n)
        mask[i, :n] = 1
    return ids, mask


def check_parity(model, directory):
    lm = tflm.load_lm(str(directory))
    ids, mask = _batch()
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(ids, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
            output_hidden_states=True,
        )
    ref_h = out.hidden_states[-1].numpy()
    ref_logits = out.logits.numpy()
    h = np.asarray(lm.features(ids, mask))
    logits = np.asarray(lm.logits(ids, mask))
    real = mask.astype(bool)
    dh = float(np.max(np.abs(h[real] - ref_h[real])))
    dl = float(np.max(np.abs(logits[real] - ref_logits[real])))
    print(f"{directory.name}: max|dh|={dh:.2e} max|dlogits|={dl:.2e}")
    assert dh <= TOL and dl <= TOL, (dh, dl)
    # next-token argmax at each sequence's last real position agrees
    last = mask.sum(1) - 1
    rows = np.arange(len(last))
    np.testing.assert_array_equal(logits[rows, last].argmax(-1), ref_logits[rows, last].argmax(-1))
    return lm


# --- parity ------------------------------------------------------------------
def test_gpt2_parity_tied(tmp_path):
    d = tmp_path / "gpt2"
    model = write_gpt2(d)
    lm = check_parity(model, d)
    assert lm.source == "hf" and lm.tied
    assert lm.backbone.intermediate_dim == 48  # n_inner, not 4 * n_embd
    assert lm.max_sequence_length == 64
    assert lm.tokenizer.eos_token_id == 5
    assert lm.vocabulary_size == VOCAB and lm.tokenizer.vocabulary_size == 259


def test_gpt2_parity_untied(tmp_path):
    d = tmp_path / "gpt2_untied"
    model = write_gpt2(d, seed=1, tie_word_embeddings=False)
    assert not torch.equal(model.lm_head.weight, model.transformer.wte.weight)
    lm = check_parity(model, d)
    assert not lm.tied and lm.head is not None and not lm.head.use_f_lin


@pytest.mark.parametrize(
    "variant",
    ["tied", "untied", "llama3_rope", "mistral"],
)
def test_llama_parity(tmp_path, variant):
    d = tmp_path / f"llama_{variant}"
    kwargs = {}
    if variant == "untied":
        kwargs = dict(tie_word_embeddings=False)
    elif variant == "llama3_rope":
        kwargs = dict(rope_scaling=dict(
            rope_type="llama3", factor=4.0, low_freq_factor=1.0, high_freq_factor=4.0,
            original_max_position_embeddings=16,
        ))
    elif variant == "mistral":
        kwargs = dict(model_type="mistral", sliding_window=32, tie_word_embeddings=False)
    model = write_llama(d, seed=3, **kwargs)
    lm = check_parity(model, d)
    bb = lm.backbone
    assert type(bb).__name__ == "Llama3Backbone"
    assert bb.layer_norm_epsilon == pytest.approx(1e-5)
    assert bb.rope_max_wavelength == pytest.approx(100000.0)
    assert bb.num_key_value_heads == 2 and bb.num_query_heads == 4
    assert lm.tied == (variant in ("tied", "llama3_rope"))
    assert lm.max_sequence_length == (32 if variant == "mistral" else 64)
    assert lm.tokenizer.eos_token_id == 2


def test_tokenizer_matches_transformers_and_no_bos(tmp_path):
    d = tmp_path / "llama"
    write_llama(d)
    lm = tflm.load_lm(str(d))
    ref = transformers.PreTrainedTokenizerFast(tokenizer_file=str(d / "tokenizer.json"))
    for s in ["the theme", "Hello, world!  12 3", "naïve café\nthe end"]:
        assert lm.tokenizer.encode(s) == ref(s, add_special_tokens=False)["input_ids"]
        assert lm.tokenizer.decode(lm.tokenizer.encode(s)) == s


def test_gpt2_vocab_merges_without_tokenizer_json(tmp_path):
    d = tmp_path / "gpt2_vm"
    write_gpt2(d)
    tok = tokenizers.Tokenizer.from_file(str(d / "tokenizer.json"))
    tok.model.save(str(d))  # vocab.json + merges.txt
    os.remove(d / "tokenizer.json")
    lm = tflm.load_lm(str(d))
    assert lm.tokenizer.encode(" the") == [258]
    assert lm.tokenizer.eos_token_id == 5


def test_bf16_and_sharded_checkpoint(tmp_path):
    d = tmp_path / "llama_bf16"
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=False,
    )
    model = transformers.LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    model.save_pretrained(d, safe_serialization=True, max_shard_size="20KB")
    write_byte_tokenizer(d)
    assert (d / "model.safetensors.index.json").exists()
    lm = tflm.load_lm(str(d))
    emb = model.model.embed_tokens.weight.detach().float().numpy()
    np.testing.assert_array_equal(np.asarray(lm.backbone.token_embedding.embeddings), emb)


# --- bad input ---------------------------------------------------------------
def _one_line(excinfo):
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    return msg


def test_missing_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError) as e:
        tflm.load_lm(str(missing))
    assert str(missing) in _one_line(e)
    with pytest.raises(FileNotFoundError) as e:
        load_hf_dir(missing)
    assert str(missing) in _one_line(e)


def test_missing_weights_file(tmp_path):
    d = tmp_path / "noweights"
    write_gpt2(d)
    os.remove(d / "model.safetensors")
    with pytest.raises(FileNotFoundError) as e:
        tflm.load_lm(str(d))
    msg = _one_line(e)
    assert str(d) in msg and "model.safetensors" in msg


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_safetensors(tmp_path, damage):
    d = tmp_path / f"corrupt_{damage}"
    write_gpt2(d)
    path = d / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else os.urandom(len(data)))
    with pytest.raises(ValueError) as e:
        tflm.load_lm(str(d))
    msg = _one_line(e)
    assert str(path) in msg and "corrupt" in msg


def test_unsupported_model_type(tmp_path):
    d = tmp_path / "bert"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(ValueError) as e:
        tflm.load_lm(str(d))
    msg = _one_line(e)
    assert str(d) in msg and "'bert'" in msg and "gpt2" in msg and "llama" in msg


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (dict(layer_norm_epsilon=1e-6), "layer_norm_epsilon"),
        (dict(activation_function="relu"), "activation_function"),
    ],
)
def test_gpt2_unsupported_config_values(tmp_path, overrides, needle):
    d = tmp_path / "gpt2_bad"
    write_gpt2(d, **overrides)
    with pytest.raises(ValueError) as e:
        tflm.load_lm(str(d))
    msg = _one_line(e)
    assert str(d) in msg and needle in msg


def test_llama_attention_bias_rejected(tmp_path):
    d = tmp_path / "llama_bias"
    write_llama(d, attention_bias=True)
    with pytest.raises(ValueError) as e:
        tflm.load_lm(str(d))
    assert "attention_bias" in _one_line(e)


def test_vocab_size_mismatch(tmp_path):
    d = tmp_path / "small_vocab"
    write_gpt2(d, vocab_size=100)  # tokenizer has 259 tokens
    with pytest.raises(ValueError) as e:
        tflm.load_lm(str(d))
    msg = _one_line(e)
    assert str(d) in msg and "259" in msg and "100" in msg


def test_keras_hub_preset_offline_fails_fast():
    from tflm.models.specs import KAGGLE_HOST, network_reachable

    if network_reachable(KAGGLE_HOST):
        pytest.skip("network reachable: the offline path cannot be tested")
    t0 = time.time()
    with pytest.raises(ConnectionError) as e:
        tflm.load_lm("gpt2_base_en")
    elapsed = time.time() - t0
    msg = _one_line(e)
    assert elapsed < 15, elapsed
    assert "gpt2_base_en" in msg and ".gguf" in msg and "Hugging Face" in msg

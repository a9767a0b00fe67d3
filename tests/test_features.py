"""Sentence features: parity with the paper's reference pipeline, truncation, batching, cache."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

import tflm
from tflm.features import CacheError, FeatureExtractor, SentenceFeatures
from tflm.features.batching import bucket_batches, padding_ratio, shuffled_length_batches
from tflm.tasks import get_task
from tflm.tokenization import word_token_ids
from tflm.tokenization.text_encoder import encode_texts
from tflm.tokenization.text_encoding import pad_batch
from tflm.tokenization.tokenizer import GPT2_ASSET_DIR

SENTENCES = [
    "The Rock is destined to be the 21st Century 's new `` Conan '' .",
    "a gorgeous , witty , seductive movie .",
    "ugh",
    "It 's a lovely film with lovely performances by Buy and Accorsi , but the story never quite takes off and it drags on for far too long .",
    "Not bad .",
]


@pytest.fixture(scope="module")
def hf_gpt2(tmp_path_factory):
    """A tiny random GPT-2 written by transformers in HF format, with the real GPT-2 BPE."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    d = str(tmp_path_factory.mktemp("hf_gpt2"))
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=50257, n_positions=64, n_embd=16, n_layer=2, n_head=2)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    model.save_pretrained(d, safe_serialization=True)
    tok = transformers.GPT2TokenizerFast(
        vocab_file=os.path.join(GPT2_ASSET_DIR, "vocab.json"),
        merges_file=os.path.join(GPT2_ASSET_DIR, "merges.txt"),
    )
    tok.save_pretrained(d)
    return d, model, tok


def reference_features(model, tok, texts, prompt, word_ids):
    """The reference code's HF/torch features: last non-pad token of model.transformer."""
    import torch

    enc = [tok(t + (prompt or ""))["input_ids"] for t in texts]
    length = max(len(e) for e in enc)
    ids = torch.zeros((len(enc), length), dtype=torch.long)
    mask = torch.zeros((len(enc), length), dtype=torch.long)
    for i, e in enumerate(enc):
        ids[i, : len(e)] = torch.tensor(e)
        mask[i, : len(e)] = 1
    with torch.no_grad():
        h = model.transformer(input_ids=ids, attention_mask=mask).last_hidden_state
        last = mask.sum(1) - 1
        f = h[torch.arange(len(enc)), last]
        phi = model.lm_head.weight
        logits = f @ phi.T
        phi_p = torch.softmax(logits, -1) @ phi
        words = logits[:, word_ids]
    return f.numpy(), phi_p.numpy(), words.numpy()


@pytest.mark.parametrize("prompt", [None, " This movie is "])
def test_parity_with_reference_pipeline(hf_gpt2, prompt):
    d, model, tok = hf_gpt2
    lm = tflm.load_lm(d)
    task = get_task("sst2")
    ids, _ = word_token_ids(lm.tokenizer, task.subset_words)
    sf = SentenceFeatures(lm, word_ids={"subset": ids}, max_tokens=64, progress=False)
    f = sf.f(SENTENCES, prompt=prompt)
    ours = sf.derive(f, ["f", "phi_p", "subset"])
    ref_f, ref_phi_p, ref_words = reference_features(model, tok, SENTENCES, prompt, ids)
    np.testing.assert_allclose(ours["f"], ref_f, atol=1e-4)
    np.testing.assert_allclose(ours["phi_p"], ref_phi_p, atol=1e-4)
    np.testing.assert_allclose(ours["subset"], ref_words, atol=1e-4)


def test_one_pass_keras_model_equals_streaming_pipeline():
    lm = tflm.load_lm("tiny-gpt2")
    ids, _ = word_token_ids(lm.tokenizer, [":(", ":)"])
    names = ["f", "phi_p", "p", "class", "proj"]
    model = FeatureExtractor(lm.backbone, features=names, word_ids={"class": ids}, word_mode="logprobs")
    enc, _ = encode_texts(lm.tokenizer, SENTENCES, " This movie is ")
    tok, mask = pad_batch(enc)
    one_pass = {k: np.asarray(v) for k, v in model({"token_ids": tok, "padding_mask": mask}).items()}
    sf = SentenceFeatures(lm, word_ids={"class": ids}, word_mode="logprobs", progress=False)
    streamed = sf.derive(sf.f(SENTENCES, prompt=" This movie is "), names, batch_rows=2)
    for k in names:
        np.testing.assert_allclose(one_pass[k], streamed[k], atol=1e-5, err_msg=k)
    np.testing.assert_allclose(one_pass["p"].sum(-1), 1.0, atol=1e-5)
    # log-probs of the class words equal log p at those ids
    np.testing.assert_allclose(np.exp(one_pass["class"]), one_pass["p"][:, ids], rtol=1e-4)
    # config round trip
    clone = FeatureExtractor.from_config(model.get_config())
    assert clone.features == names and clone.word_ids == {"class": ids}


def test_padding_never_changes_features_and_order_is_kept():
    lm = tflm.load_lm("tiny-gpt2")
    alone = np.stack([SentenceFeatures(lm, progress=False).f([s])[0] for s in SENTENCES])
    together = SentenceFeatures(lm, max_tokens=40, progress=False).f(SENTENCES)
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_random_projection_has_orthonormal_rows():
    from tflm.features.random_projection import orthonormal_rows

    a = orthonormal_rows(8, 500, seed=3)
    np.testing.assert_allclose(a @ a.T, np.eye(8), atol=1e-5)
    np.testing.assert_array_equal(a, orthonormal_rows(8, 500, seed=3))


def test_truncation_keeps_prompt_and_end_of_long_review():
    lm = tflm.load_lm("tiny-gpt2")
    review = " ".join(f"word{i}" for i in range(1500)) + " THE END"
    assert len(lm.tokenizer.encode(review)) > 3000
    prompt = " This movie is "
    (ids,), truncated = encode_texts(lm.tokenizer, [review], prompt, max_length=128)
    assert truncated == 1 and len(ids) == 128
    assert lm.tokenizer.decode(ids).endswith("THE END This movie is ")
    # the feature pipeline uses the same rule (model context 128)
    f = SentenceFeatures(lm, progress=False).f([review], prompt=prompt)
    tail = lm.tokenizer.encode(lm.tokenizer.decode(ids))
    f_tail = SentenceFeatures(lm, progress=False).f([lm.tokenizer.decode(ids)])
    assert tail == list(ids)
    np.testing.assert_allclose(f, f_tail, atol=1e-5)


def test_strip_prompt_space_moves_f_off_the_space_token():
    lm = tflm.load_lm("tiny-gpt2")
    (a,), _ = encode_texts(lm.tokenizer, ["great"], " This movie is ")
    (b,), _ = encode_texts(lm.tokenizer, ["great"], " This movie is ", strip_prompt_space=True)
    assert a[-1] == 220 and list(b) == list(a[:-1])


def test_bucketing_reduces_padding_and_respects_budgets():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=500)
    batches = bucket_batches(lengths, max_tokens=512, max_attention=10_000)
    assert sorted(np.concatenate([b for b, _ in batches]).tolist()) == list(range(500))
    for idx, padded in batches:
        assert padded >= lengths[idx].max()
        assert len(idx) == 1 or (len(idx) * padded <= 512 and len(idx) * padded**2 <= 10_000)
    unsorted = [(np.arange(i, min(i + 25, 500)), int(lengths[i:i + 25].max())) for i in range(0, 500, 25)]
    assert padding_ratio(lengths, batches) < padding_ratio(lengths, unsorted)


def _padded_fraction(lengths, batches, multiple=8):
    """The fine-tuning pipeline's padding: each batch padded to its longest, rounded up to `multiple`."""
    computed = sum(len(b) * -(-int(lengths[b].max()) // multiple) * multiple for b in batches)
    return 1 - sum(int(lengths[b].sum()) for b in batches) / computed


def test_shuffled_length_batches_seeded_complete_and_less_padded():
    """Training batches: a function of (seed, epoch) only, every kept example once, the remainder dropped,
    window 0 = the plain permutation's batches; length-sorting within windows cuts padding on SST-2."""
    from tflm.tasks.splits import load_texts

    texts, _, _ = load_texts("sst2", "train")  # ships with tflm
    lengths = np.asarray([len(x) for x in tflm.load_lm("tiny-gpt2").tokenizer.encode_batch(texts)])
    n, bs = len(lengths), 16
    plan = shuffled_length_batches(lengths, bs, seed=3, epoch=1)
    assert all(len(b) == bs for b in plan) and len(plan) == n // bs
    flat = np.concatenate(plan)
    assert len(set(flat.tolist())) == len(flat) == n // bs * bs
    again = shuffled_length_batches(lengths, bs, seed=3, epoch=1)
    assert all(np.array_equal(a, b) for a, b in zip(plan, again))
    assert not all(np.array_equal(a, b) for a, b in zip(plan, shuffled_length_batches(lengths, bs, 3, 2)))
    perm = np.random.RandomState([3, 1]).permutation(n)
    plain = shuffled_length_batches(lengths, bs, 3, 1, window=0)
    assert all(np.array_equal(b, perm[i * bs:(i + 1) * bs]) for i, b in enumerate(plain))
    assert set(np.concatenate(plain).tolist()) == set(flat.tolist())  # the same examples kept
    one = shuffled_length_batches(lengths, bs, 3, 1, window=1)  # window 1: the plain batches, reordered
    assert sorted(tuple(sorted(b)) for b in one) == sorted(tuple(sorted(b)) for b in plain)
    random_pad, sorted_pad = _padded_fraction(lengths, plain), _padded_fraction(lengths, plan)
    assert random_pad > 0.3 and sorted_pad < random_pad / 3, (random_pad, sorted_pad)


def test_bad_inputs():
    lm = tflm.load_lm("tiny-gpt2")
    sf = SentenceFeatures(lm, progress=False)
    with pytest.raises(ValueError, match="unknown feature"):
        sf.derive(np.zeros((1, 16), np.float32), ["f", "nonsense"])
    with pytest.raises(ValueError, match="prompt '' has no tokens"):
        sf.f(["x"], prompt="")
    with pytest.raises(ValueError, match="empty dataset"):
        sf.f([])
    with pytest.raises(ValueError, match="no word has a single-token variant"):
        word_token_ids(lm.tokenizer, ["antidisestablishmentarianism"])
    with pytest.raises(ValueError, match="needs a word list"):
        sf.derive(np.zeros((1, 16), np.float32), ["class"])


def test_cache_hits_invalidates_detects_corruption_and_resumes(tmp_path, monkeypatch):
    import tflm.features.extract as extract

    monkeypatch.setattr(extract, "CHUNK_SIZE", 2)
    lm = tflm.load_lm("tiny-gpt2")
    sf = SentenceFeatures(lm, cache_dir=str(tmp_path), progress=False)
    f1 = sf.f(SENTENCES, prompt=" This movie is ", identity={"task": "t"})
    assert sf.last_stats["computed_tokens"] > 0
    f2 = sf.f(SENTENCES, prompt=" This movie is ", identity={"task": "t"})
    assert sf.last_stats["computed_tokens"] == 0
    np.testing.assert_array_equal(f1, f2)
    # a key change (prompt) is a different cache entry
    sf.f(SENTENCES, prompt=None, identity={"task": "t"})
    assert sf.last_stats["computed_tokens"] > 0
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2
    # corrupt one chunk: detected, never silently used
    key_dir = next(p for p in tmp_path.iterdir() if (p / "chunk_00002.npz").exists() and "This movie" in (p / "key.json").read_text())
    chunk = key_dir / "chunk_00001.npz"
    data = bytearray(chunk.read_bytes())
    data[-40:-20] = b"\x00" * 20
    chunk.write_bytes(bytes(data))
    with pytest.raises(CacheError, match="chunk_00001"):
        sf.f(SENTENCES, prompt=" This movie is ", identity={"task": "t"})
    repaired = SentenceFeatures(lm, cache_dir=str(tmp_path), repair_cache=True, progress=False)
    np.testing.assert_allclose(repaired.f(SENTENCES, prompt=" This movie is ", identity={"task": "t"}), f1, atol=1e-6)
    # interrupted run: only some chunks exist -> the rest is computed, result identical
    os.remove(key_dir / "chunk_00002.npz")
    resumed = SentenceFeatures(lm, cache_dir=str(tmp_path), progress=False)
    f3 = resumed.f(SENTENCES, prompt=" This movie is ", identity={"task": "t"})
    assert 0 < resumed.last_stats["computed_tokens"] < sum(len(x) for x in encode_texts(lm.tokenizer, SENTENCES, " This movie is ")[0])
    np.testing.assert_allclose(f3, f1, atol=1e-6)


def test_extractors_of_one_lm_share_one_traced_forward_pass():
    """A second extractor on the same LM reuses the first one's traced graph (no second ~5 s first call)
    and gives the same f; another LM, or a strategy, gets its own."""
    import tensorflow as tf

    lm, other = tflm.load_lm("tiny-gpt2"), tflm.load_lm("tiny-gpt2")
    a, b = SentenceFeatures(lm, progress=False), SentenceFeatures(lm, progress=False, packing=False)
    assert a.forward is b.forward
    assert SentenceFeatures(other, progress=False).forward is not a.forward
    assert SentenceFeatures(lm, progress=False, strategy=tf.distribute.get_strategy()).forward is not a.forward
    texts = ["a fine film", "dull", "the plot is thin but the cast is great"]
    fa = a.f(texts)
    traces = a.forward._step.experimental_get_tracing_count() + a.forward._packed_step.experimental_get_tracing_count()
    np.testing.assert_allclose(b.f(texts), fa, rtol=1e-5, atol=1e-6)
    assert a.forward._step.experimental_get_tracing_count() + \
        a.forward._packed_step.experimental_get_tracing_count() <= traces + 1  # b runs unpacked: at most its one trace

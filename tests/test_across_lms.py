"""Bits per byte (comparable across tokenizers) and the across-LMs job (`tflm analyze --across-lms`)."""

import json
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from conftest import colour_pixels, markdown_tables, read_png, write_sst2_subset
from tflm.analysis.bits_per_byte import bits_per_byte, start_ids
from tflm.cli import main
from tflm.models import load_lm

DOCS = ["A quiet film about two brothers, shot on location.", "Terrible.", "I laughed, then I cried — café scenes."]


def _nats(lm, text):
    """-ln p(text | start token) from the full logits, in numpy float64."""
    ids = start_ids(lm.tokenizer) + lm.tokenizer.encode(text)
    x = np.array([ids], np.int32)
    logits = np.asarray(lm.logits(x, np.ones_like(x)))[0].astype(np.float64)
    m = logits.max(-1, keepdims=True)
    logz = (np.log(np.exp(logits - m).sum(-1, keepdims=True)) + m)[:, 0]
    return float(np.sum(logz[:-1] - logits[np.arange(len(ids) - 1), ids[1:]]))


@pytest.mark.parametrize("spec", ["tiny-gpt2", "tiny-llama"])
def test_bits_per_byte_is_the_total_log_loss_over_utf8_bytes(spec):
    lm = load_lm(spec)
    res = bits_per_byte(lm, DOCS)  # three lengths in one bucketed, padded batch
    nats = sum(_nats(lm, t) for t in DOCS)
    n_bytes = sum(len(t.encode("utf-8")) for t in DOCS)
    assert res["bytes"] == n_bytes > sum(len(t) for t in DOCS)  # the dash and the accent take 2-3 bytes
    assert res["tokens"] == sum(len(lm.tokenizer.encode(t)) for t in DOCS)
    np.testing.assert_allclose(res["bits_per_byte"], nats / math.log(2) / n_bytes, rtol=1e-5)
    np.testing.assert_allclose(res["nats_per_token"], nats / res["tokens"], rtol=1e-5)
    # A random model is near uniform: about log2(V) bits per token.
    assert 0.5 * math.log(lm.vocabulary_size) < res["nats_per_token"] < 2 * math.log(lm.vocabulary_size)


def test_bits_per_byte_bounds_the_logits_per_batch(monkeypatch):
    from tflm.analysis import bits_per_byte as module

    lm = load_lm("tiny-gpt2")
    seen = []
    real = module.bucket_batches
    monkeypatch.setattr(module, "bucket_batches", lambda lengths, max_tokens, *a: seen.append(max_tokens) or real(
        lengths, max_tokens, *a))
    monkeypatch.setattr(module, "LOGIT_ELEMENTS", 8 * lm.vocabulary_size)  # 8 tokens of logits per batch
    res = bits_per_byte(lm, DOCS)
    longest = max(len(lm.tokenizer.encode(t)) + 1 for t in DOCS)
    assert seen == [longest] and longest > 8  # not the model's context length (128 here, 32,768 for Gemma 3)
    np.testing.assert_allclose(res["bits_per_byte"], bits_per_byte(lm, DOCS[:1] + DOCS[1:])["bits_per_byte"])


def test_bits_per_byte_refuses_too_long_and_empty_texts():
    lm = load_lm("tiny-gpt2")
    with pytest.raises(ValueError, match="held-out text 1 has .* tokens .* context of 128"):
        bits_per_byte(lm, ["fine", "word " * 200])
    with pytest.raises(ValueError, match="held-out text 0 is empty"):
        bits_per_byte(lm, [""])
    with pytest.raises(ValueError, match="at least one text"):
        bits_per_byte(lm, [])


def test_across_lms_cli_writes_table_plot_and_json(tmp_path):
    (tmp_path / "toy").mkdir()
    data = write_sst2_subset(str(tmp_path / "toy"), (("train", 12), ("dev", 2), ("test", 8)))
    valid = tmp_path / "valid.txt"
    valid.write_text("\n".join(DOCS + ["x" * 2000, "One more review, short and kind."]) + "\n", encoding="utf-8")
    out = tmp_path / "across"
    assert main(["analyze", "--across-lms", "tiny-gpt2,tiny-llama", "--valid", str(valid), "--task", data,
                 "--held-out-docs", "4", "--out", str(out)]) == 0
    res = json.load(open(out / "results.json"))
    assert [m["model"] for m in res["models"]] == ["tiny-gpt2", "tiny-llama"]
    assert res["n_docs"] == 4  # the 2,000-character line is left out
    lm = load_lm("tiny-gpt2")
    kept = DOCS + ["One more review, short and kind."]
    np.testing.assert_allclose(res["models"][0]["bits_per_byte"], bits_per_byte(lm, kept)["bits_per_byte"], rtol=1e-6)
    task = next(iter(res["tasks"]))
    assert res["tasks"][task] == {"train": 24, "test": 16}
    for m in res["models"]:
        assert set(m["accuracy"][task]) == {"f", "phi_p"} and all(0 <= a <= 1 for a in m["accuracy"][task].values())
    (header, rows), = markdown_tables(open(out / "across_lms.md").read())
    assert header[:4] == ["model", "parameters", "V", "bits / byte"] and len(rows) == 2
    assert "not a trend" in open(out / "across_lms.md").read()
    # A rerun with the same settings reuses each model's finished row.
    logs = []
    from tflm.jobs.across_lms import across_lms
    again = across_lms(["tiny-gpt2", "tiny-llama"], str(valid), str(out), tasks=[data], n_docs=4, dtype="float32",
                       log=logs.append)
    assert all("done earlier" in line for line in logs) and again["models"] == res["models"]
    img = read_png(out / "accuracy_vs_bits_per_byte.png", (840, 540))
    assert colour_pixels(img, "C0") > 20  # the task's markers


def test_across_lms_needs_two_models_and_valid(tmp_path, capsys):
    assert main(["analyze", "--across-lms", "tiny-gpt2", "--valid", __file__, "--out", str(tmp_path)]) == 2
    assert "at least two models" in capsys.readouterr().err
    assert main(["analyze", "--across-lms", "tiny-gpt2,tiny-llama", "--out", str(tmp_path)]) == 2
    assert "needs --valid FILE" in capsys.readouterr().err

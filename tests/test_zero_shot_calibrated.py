"""Calibrated zero-shot (class scores centred over the evaluated texts) and the task's zero-shot words."""

import json
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from tflm.probes.zero_shot import calibrate_class_scores, zero_shot_predict, zero_shot_probe
from tflm.tasks import get_task, task_from_folder
from tflm.tasks.errors import DataError
from tflm.tasks.task import Task

# 3 texts; token 10 -> class 0, tokens 20 and 30 -> class 1 (their probabilities add up).
P = np.array([[0.10, 0.30, 0.20],
              [0.20, 0.20, 0.20],
              [0.30, 0.10, 0.15]])
IDS = [10, 20, 30]
CLASSES = {10: 0, 20: 1, 30: 1}
LABELS = np.array([1, 0, 0])


def test_calibrated_zero_shot_against_a_hand_computation():
    # By hand: p(class 0) = .1, .2, .3; p(class 1) = .5, .4, .25 -> uncalibrated predictions 1, 1, 0.
    # Centring log scores by their mean over the texts divides each class's probability by its geometric
    # mean: class 0 by (.1*.2*.3)^(1/3) = 0.18171, class 1 by (.5*.4*.25)^(1/3) = 0.36840, giving
    # class 0: 0.5503, 1.1006, 1.6510 and class 1: 1.3572, 1.0858, 0.6786 -> predictions 1, 0, 0.
    plain = zero_shot_probe(np.log(P), LABELS, IDS, CLASSES, 2, score_type="logprobs")
    cal = zero_shot_probe(np.log(P), LABELS, IDS, CLASSES, 2, score_type="logprobs", calibrate=True)
    assert plain["predictions"].tolist() == [1, 1, 0] and plain["accuracy"] == pytest.approx(2 / 3)
    assert cal["predictions"].tolist() == [1, 0, 0] and cal["accuracy"] == 1.0 and cal["calibrated"]
    g0, g1 = (0.1 * 0.2 * 0.3) ** (1 / 3), (0.5 * 0.4 * 0.25) ** (1 / 3)
    hand = np.log([[0.1 / g0, 0.5 / g1], [0.2 / g0, 0.4 / g1], [0.3 / g0, 0.25 / g1]])
    np.testing.assert_allclose(cal["class_scores"], hand, atol=1e-12)
    assert math.isclose(g0, 0.18171, rel_tol=1e-4) and math.isclose(g1, 0.36840, rel_tol=1e-4)


def test_calibration_is_the_same_for_logits_logprobs_and_probs():
    log_z = np.array([[3.0], [-1.5], [7.25]])  # logits = log p + log Z(s), one Z per text
    for scores, kind in ((np.log(P) + log_z, "logits"), (P, "probs"), (np.log(P), "logprobs")):
        pred = zero_shot_predict(scores, IDS, CLASSES, 2, score_type=kind, calibrate=True)
        assert pred.tolist() == [1, 0, 0], kind


def test_calibration_centres_columns_and_leaves_minus_inf_out():
    scores = np.array([[1.0, -np.inf], [3.0, 2.0], [5.0, 4.0]])
    out = calibrate_class_scores(scores)
    np.testing.assert_allclose(out[:, 0], [-2.0, 0.0, 2.0])
    assert out[0, 1] == -np.inf and out[1:, 1].tolist() == [-1.0, 1.0]
    np.testing.assert_allclose(calibrate_class_scores(out)[1:], out[1:])  # idempotent


# --- zero-shot words: a task field and a task.json key -------------------------------------------
def test_zero_shot_words_default_to_per_class_class_words():
    assert get_task("agnews").zero_shot_words == get_task("agnews").class_words
    assert Task(name="t", num_classes=2, class_words=("no", "yes")).zero_shot_words == ("no", "yes")
    for name in ("sst2", "imdb", "cr", "mpqa", "glue_sst2"):  # binary sentiment: the posneg words
        assert get_task(name).zero_shot_words == ("negative", "positive")
    assert get_task("sst5").zero_shot_words == ()  # two class words for five classes: no zero-shot
    t = get_task("sst2").replace(zeroshot_words=("negative", "positive"))
    assert t.zero_shot_words == ("negative", "positive") and Task.from_config(t.get_config()) == t


def test_zero_shot_words_need_one_per_class():
    with pytest.raises(ValueError, match="3 zeroshot_words for 2 classes"):
        Task(name="x", num_classes=2, zeroshot_words=("a", "b", "c"))


def test_zero_shot_words_from_task_json(tmp_path):
    folder = tmp_path / "mytask"
    folder.mkdir()
    (folder / "train.tsv").write_text("label\ttext\n0\tbad\n1\tgood\n", encoding="utf-8")
    (folder / "task.json").write_text(json.dumps({"zeroshot_words": ["bad", "good"]}), encoding="utf-8")
    assert task_from_folder(str(folder)).zero_shot_words == ("bad", "good")
    (folder / "task.json").write_text(json.dumps({"zeroshot_words": ["bad"]}), encoding="utf-8")
    with pytest.raises(DataError, match="task.json"):
        task_from_folder(str(folder))


def test_probe_job_zero_shot_rows_use_the_task_words_and_calibration(tmp_path):
    """On a tiny model, the probe job's two zero-shot rows equal the hand pipeline on its features."""
    import tflm
    from tflm.features import SentenceFeatures
    from tflm.jobs.probe_job import probe_task
    from tflm.tokenization import word_token_ids

    folder = tmp_path / "pn"
    folder.mkdir()
    texts = [f"{'good fun' if i % 3 else 'bad day'} {i}" for i in range(24)]
    rows = "".join(f"{int(i % 3 > 0)}\t{t}\n" for i, t in enumerate(texts))
    for split in ("train", "test"):
        (folder / f"{split}.tsv").write_text("label\ttext\n" + rows, encoding="utf-8")
    (folder / "task.json").write_text(json.dumps({"prompt": " It was ", "zeroshot_words": ["bad", "good"]}))
    task = task_from_folder(str(folder))
    lm = tflm.load_lm("tiny-gpt2")
    out = probe_task(lm, task, ["zeroshot", "zeroshot_cal"], True, cache_dir=None, progress=False,
                     log=lambda *a: None)
    f = SentenceFeatures(lm, progress=False).f(texts, prompt=" It was ")
    ids, kept = word_token_ids(lm.tokenizer, ["bad", "good"])
    classes = {tid: int(w == "good") for w, _, tid in kept}
    scores = f @ np.asarray(lm.output_embeddings())[ids].T
    y = np.array([int(i % 3 > 0) for i in range(24)])
    for row in out:
        want = zero_shot_probe(scores, y, ids, classes, 2, "logits", calibrate=row["feature"] == "zeroshot_cal")
        assert row["test_accuracy"] == pytest.approx(want["accuracy"]), row["feature"]
        assert sorted(v[0] for v in row["zero_shot_word_variants"]) == sorted(w for w, _, _ in kept)

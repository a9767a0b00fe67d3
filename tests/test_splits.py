"""`tflm.tasks.splits`: one seeded subsample for probes and fine-tuning; one list of feature names."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tflm.features import FEATURES, canonical_feature_name  # noqa: E402
from tflm.features.names import check_feature_names  # noqa: E402
from tflm.tasks import Task, get_task  # noqa: E402
from tflm.tasks.splits import finetune_splits, load_texts, resolve_task, subsample, subsample_index  # noqa: E402


@pytest.mark.parametrize("seed", [0, 3])
def test_max_train_gives_probes_and_finetuning_the_same_training_set(seed):
    """`--max-train N --seed s`: the probe job's subsample equals fine-tuning's (SST-2 paper protocol)."""
    task = resolve_task("sst2")
    texts, labels, _ = load_texts(task, "train")  # what the probe job reads
    probe_texts, probe_labels, subsampled = subsample(texts, labels, 50, seed)
    splits, how = finetune_splits("sst2", seed=seed, max_train=50)
    ft_texts, ft_labels = splits["train"]
    assert subsampled and "train subsampled to 50" in how
    assert ft_texts == probe_texts and np.array_equal(ft_labels, probe_labels)
    assert len(set(probe_texts)) == 50 and set(probe_texts) <= set(texts)
    other, _, _ = subsample(texts, labels, 50, seed + 1)
    assert other != probe_texts  # the seed matters


def test_subsample_index_sorted_seeded_and_complete():
    a = subsample_index(1000, 10, seed=0)
    assert np.array_equal(a, subsample_index(1000, 10, seed=0)) and np.all(np.diff(a) > 0) and len(a) == 10
    assert np.array_equal(subsample_index(5, 10), np.arange(5)) and np.array_equal(subsample_index(5, None), np.arange(5))
    texts, labels, subsampled = subsample(["a", "b"], np.array([0, 1]), 5)
    assert texts == ["a", "b"] and not subsampled


def test_resolve_task_accepts_task_name_and_folder(tmp_path):
    sst2 = get_task("sst2")
    assert resolve_task(sst2) is sst2 and resolve_task("sst2").name == "sst2"
    folder = tmp_path / "toy"
    folder.mkdir()
    for split in ("train", "test"):
        (folder / f"{split}.tsv").write_text("0\tbad\n1\tgood\n0\tawful\n1\tfine\n")
    assert isinstance(resolve_task(str(folder)), Task)


def test_one_list_of_feature_names():
    assert canonical_feature_name("random_projection") == "proj" and canonical_feature_name("Phi p_f") == "phi_p"
    assert check_feature_names(["f", "random_projection", "subset p_f"]) == ["f", "proj", "subset"]
    task = get_task("sst5")
    for name in FEATURES:
        assert task.probe_solver(name) == task.probe_solver(canonical_feature_name(name))
    assert task.probe_solver("random_projection") == task.probe_solver("proj")
    with pytest.raises(ValueError, match="unknown feature name 'nope'"):
        check_feature_names(["f", "nope"])


def test_split_name_is_the_cache_identity_of_a_subsample():
    from tflm.tasks.splits import split_name

    assert split_name("train", False, 6920) == "train"
    assert split_name("train", True, 500) == "train[500]"
    assert split_name("test", True, 1000) == "test[1000]"

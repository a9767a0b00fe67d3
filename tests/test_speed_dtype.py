"""Compute dtype: Keras dtype policies, ties kept, dtype in the cache key, clear errors."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
import tensorflow as tf

import tflm
from tflm.cli import build_parser
from tflm.features import SentenceFeatures
from tflm.models.language_model import check_dtype, dtype_policy

TEXTS = ["a gorgeous , witty , seductive movie .", "ugh", "Not bad at all , really ."]


@pytest.mark.parametrize("spec", ["tiny-llama", "tiny-gpt2", "tiny-gpt2-untied"])
def test_bfloat16_rebuild_keeps_ties_weights_and_fingerprint(spec):
    lm = tflm.load_lm(spec)
    lb = tflm.load_lm(spec, dtype="bfloat16")
    assert (lm.dtype, lb.dtype) == ("float32", "bfloat16")
    assert lb.backbone.dtype_policy.name == "mixed_bfloat16"
    assert lb.tied == lm.tied and len(lb.weights()) == len(lm.weights())
    assert lb.fingerprint() == lm.fingerprint()
    for a, b in zip(lm.weights(), lb.weights()):  # float32 weights, exactly the source's (Phi too)
        assert b.dtype == "float32"
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    ids = np.array([[5, 6, 7]], np.int32)
    assert lb.features(ids, np.ones_like(ids)).dtype == "bfloat16"
    f32 = SentenceFeatures(lm, progress=False).f(TEXTS)
    bf16 = SentenceFeatures(lb, progress=False).f(TEXTS)
    assert bf16.dtype == np.float32
    cos = np.sum(f32 * bf16, 1) / np.linalg.norm(f32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert cos.min() > 0.99, cos
    assert not np.array_equal(f32, bf16)


def test_policies_and_same_dtype_is_a_no_op():
    lm = tflm.load_lm("tiny-llama")
    assert lm.with_dtype("float32") is lm
    assert lm.with_dtype("bfloat16").with_dtype("float32").backbone.dtype_policy.name == "float32"
    assert dtype_policy("bfloat16") == "mixed_bfloat16" and dtype_policy("float32") == "float32"


def test_dtype_is_part_of_the_cache_key(tmp_path):
    lm = tflm.load_lm("tiny-gpt2")
    a = SentenceFeatures(lm, cache_dir=str(tmp_path), progress=False)
    b = SentenceFeatures(lm.with_dtype("bfloat16"), cache_dir=str(tmp_path), progress=False)
    assert (a.cache_parts(TEXTS, None)["dtype"], b.cache_parts(TEXTS, None)["dtype"]) == ("float32", "mixed_bfloat16")
    a.f(TEXTS)
    b.f(TEXTS)
    assert b.last_stats["computed_tokens"] > 0  # not served from the float32 cache
    assert len([d for d in os.listdir(tmp_path)]) == 2


def test_unsupported_dtypes_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown dtype 'int8'"):
        tflm.load_lm("tiny-gpt2", dtype="int8")
    if not tf.config.list_logical_devices("GPU"):
        with pytest.raises(ValueError, match="float16' needs a GPU"):
            check_dtype("float16")


@pytest.mark.skipif(bool(tf.config.list_logical_devices("GPU")), reason="the error is for machines without a GPU")
def test_finetune_float16_on_a_cpu_is_one_clear_error(tmp_path, capsys):
    from tflm.cli import main

    assert main(["finetune", "--model", "tiny-gpt2", "--task", "sst2", "--dtype", "float16",
                 "--out", str(tmp_path / "ft")]) == 2
    err = capsys.readouterr().err
    assert "float16' needs a GPU" in err and "bfloat16" in err and err.count("\n") == 1
    assert not os.path.exists(tmp_path / "ft" / "grid_state.json")


@pytest.mark.parametrize("command", ["features", "probe", "reproduce", "analyze", "finetune"])
def test_every_lm_command_takes_dtype(command):
    required = {"features": ["--model", "m", "--task", "sst2", "--out", "x"], "probe": ["--model", "m", "--task", "sst2"],
                "finetune": ["--model", "m", "--task", "sst2"]}.get(command, [])
    args = build_parser().parse_args([command, *required, "--dtype", "bfloat16"])
    assert args.dtype == "bfloat16"
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, *required, "--dtype", "int8"])


@pytest.mark.slow
def test_finetune_trains_under_the_mixed_bfloat16_policy(tmp_path):
    from tflm.finetune import finetune

    folder = tmp_path / "toy"
    folder.mkdir()
    rows = ["label\ttext"] + [f"{i % 2}\t{t}" for i, t in enumerate(TEXTS * 4)]
    for split in ("train", "dev", "test"):
        (folder / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    report = finetune("tiny-gpt2", str(folder), lrs=[1e-3], batch_sizes=[4], epochs=1, splits="files",
                      strategy="one", out_dir=str(tmp_path / "out"), verbose=0, dtype="bfloat16")
    run = report["runs"][0]
    assert np.isfinite(run["history"]["loss"]).all()
    import json

    with open(tmp_path / "out" / "grid_state.json") as f:
        assert json.load(f)["settings"]["dtype"] == "bfloat16"

"""LanguageModel handle, tiny models, preset save/reload, and the info/tokenize commands."""

import io
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

import tflm
from tflm.cli import main
from tflm.models.keras_hub_preset import save_preset_dir

IDS = np.array([[464, 3797, 318, 220], [40, 588, 0, 0]], dtype=np.int32)
MASK = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=np.int32)


@pytest.mark.parametrize("spec,dtype,tol", [
    ("tiny-gpt2", "float32", 0.0),
    ("tiny-gpt2-untied", "float32", 0.0),
    ("tiny-llama", "float32", 0.0),
    ("tiny-gpt2-untied", "float16", 1e-2),
])
def test_save_and_reload_preset(tmp_path, spec, dtype, tol):
    lm = tflm.load_lm(spec)
    save_preset_dir(lm, str(tmp_path), weights_dtype=dtype, model_card={"objective": "xent"})
    again = tflm.load_lm(str(tmp_path))
    assert again.tied == lm.tied and again.hidden_dim == lm.hidden_dim
    assert again.tokenizer.encode("it 's good") == lm.tokenizer.encode("it 's good")
    a, b = np.asarray(lm.logits(IDS, MASK)), np.asarray(again.logits(IDS, MASK))
    assert np.abs(a - b)[MASK == 1].max() <= tol
    assert again.metadata["objective"] == "xent"


def test_phi_is_tied_embedding_or_untied_head():
    tied = tflm.load_lm("tiny-gpt2")
    assert tied.tied and tied.output_embeddings() is tied.backbone.token_embedding.embeddings
    untied = tflm.load_lm("tiny-gpt2-untied")
    assert not untied.tied and untied.output_embeddings() is untied.head.phi
    # f for an untied model is the output of f_lin
    h = np.asarray(untied.hidden_states(IDS, MASK))
    f = np.asarray(untied.features(IDS, MASK))
    w, b = untied.head.f_lin.get_weights()
    np.testing.assert_allclose(f, h @ w + b, atol=1e-5)


def test_fingerprint_changes_with_weights():
    lm = tflm.load_lm("tiny-gpt2")
    fp = lm.fingerprint()
    assert fp == tflm.load_lm("tiny-gpt2").fingerprint()
    lm2 = tflm.load_lm("tiny-gpt2")
    v = lm2.backbone.layer_norm.gamma
    v.assign(v * 2.0)
    lm2._fingerprint = None
    assert lm2.fingerprint() != fp


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        tflm.load_lm(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        tflm.load_lm(str(tmp_path / "x.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        tflm.load_lm(str(tmp_path / "empty"))


def test_cli_info_and_errors(capsys):
    assert main(["info", "tiny-gpt2"]) == 0
    out = capsys.readouterr().out
    assert "GPT2Backbone" in out and "50257" in out and "tied" in out
    assert main(["info", "/no/such/model"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tflm info: error:") and err.count("\n") == 1


def test_cli_tokenize_matches_reference(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("it 's good\n great :)\n"))
    assert main(["tokenize", "tiny-gpt2"]) == 0
    assert capsys.readouterr().out.splitlines() == ["270 705 82 922", "1049 14373"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("it 's\n"))
    assert main(["tokenize", "tiny-gpt2", "--pieces"]) == 0
    assert capsys.readouterr().out.split() == ["it", "Ġ'", "s"]


@pytest.mark.slow
def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "tflm.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "tokenize" in out.stdout and "info" in out.stdout


def test_nested_backbone_config_keeps_tied_llama_tied():
    from tflm.features import FeatureExtractor
    from tflm.lm.causal_lm import CausalLM

    lm = tflm.load_lm("tiny-llama")
    for model in (CausalLM(lm.backbone, objective="xent"), FeatureExtractor(lm.backbone, features=["f"])):
        clone = type(model).from_config(model.get_config())
        assert clone.backbone.tie_word_embeddings
        assert len(clone.backbone.weights) == len(lm.backbone.weights)

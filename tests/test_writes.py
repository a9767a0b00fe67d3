"""Writes that fail (full disk, I/O error, file size limit) and writers that run at once.

Every file tflm writes goes through `tflm.atomic`: a failed write leaves no
partial file, keeps what was there, and raises `WriteError` naming the path; a
rerun after space is freed resumes. `conftest.disk_full_on` makes the flush of
a chosen file fail (ENOSPC or EIO); one test lets the kernel refuse the write
itself (RLIMIT_FSIZE: EFBIG mid-write). Two `tflm features` processes filling
one cache at once must give the arrays of one process, byte for byte.
"""

import errno
import json
import os
import resource
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from conftest import SHIPPED_SST2, disk_full_on, partial_files, write_sst2_subset
from tflm.atomic import WriteError, append_line, atomic_path, write_atomic
from tflm.cli import main
from tflm.features import SentenceFeatures, extract
from tflm.features.feature_cache import FeatureCache
from tflm.models import load_lm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXTS = ["a gorgeous , witty , seductive movie .", "ugh", "Not bad .", "The Rock is destined to be great .",
         "it drags on for far too long .", "lovely performances", "a mess"]


# --- the helper ------------------------------------------------------------------------------
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_failed_write_keeps_the_old_file_and_names_the_path(tmp_path, monkeypatch, code):
    path = tmp_path / "results.json"
    write_atomic(path, "old\n")
    failed = disk_full_on(monkeypatch, "results.json", code)
    with pytest.raises(WriteError, match=f"could not write {path}: {os.strerror(code)}") as e:
        write_atomic(path, "new\n" * 1000)
    assert failed and e.value.errno == code and e.value.path == str(path)
    assert path.read_text() == "old\n" and partial_files(tmp_path) == []
    write_atomic(path, "new\n")  # space freed: the same write succeeds
    assert path.read_text() == "new\n"


def test_failed_folder_write_keeps_the_old_folder(tmp_path, monkeypatch):
    folder = tmp_path / "export"
    with atomic_path(folder, directory=True) as tmp:
        (open(os.path.join(tmp, "a.txt"), "w")).write("old")
    disk_full_on(monkeypatch, "b.bin")
    with pytest.raises(WriteError, match=f"could not write {folder}"):
        with atomic_path(folder, directory=True) as tmp:
            open(os.path.join(tmp, "a.txt"), "w").write("new")
            open(os.path.join(tmp, "b.bin"), "wb").write(b"x" * 10000)
    assert sorted(os.listdir(folder)) == ["a.txt"] and (folder / "a.txt").read_text() == "old"
    assert partial_files(tmp_path) == []


def test_atomic_files_and_folders_get_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a.json", "{}")
        with atomic_path(tmp_path / "export", directory=True) as tmp:
            open(os.path.join(tmp, "x"), "w").write("x")
    finally:
        os.umask(mask)
    assert oct(os.stat(tmp_path / "a.json").st_mode & 0o777) == oct(0o644)
    assert oct(os.stat(tmp_path / "export").st_mode & 0o777) == oct(0o755)


def test_an_exception_in_the_writer_leaves_nothing(tmp_path):
    with pytest.raises(KeyError):
        with atomic_path(tmp_path / "x.npz", suffix=".npz") as tmp:
            np.savez(tmp, a=np.zeros(3))
            raise KeyError("stop")
    assert os.listdir(tmp_path) == []


def test_append_line_is_all_or_nothing(tmp_path, monkeypatch):
    log = tmp_path / "grid_log.jsonl"
    append_line(log, '{"event": "run_start"}')
    real = os.write

    def short_then_full(fd, data):  # the disk fills in the middle of the line
        if len(data) > 4:
            real(fd, bytes(data[:4]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", short_then_full)
    with pytest.raises(WriteError, match="grid_log.jsonl"):
        append_line(log, '{"event": "epoch_end", "epoch": 3}')
    assert log.read_text() == '{"event": "run_start"}\n'


# --- the feature cache -----------------------------------------------------------------------
def test_cache_chunk_disk_full_then_resume(tmp_path, monkeypatch):
    monkeypatch.setattr(extract, "CHUNK_SIZE", 2)  # 7 texts -> 4 chunks
    lm = load_lm("tiny-gpt2")
    uncached = SentenceFeatures(lm, progress=False)
    whole, full_tokens = uncached.f(TEXTS), uncached.last_stats["computed_tokens"]
    cache = str(tmp_path / "cache")
    failed = disk_full_on(monkeypatch, "chunk_00001")
    with pytest.raises(WriteError, match=r"could not write .*chunk_00001\.npz: No space left on device"):
        SentenceFeatures(lm, cache_dir=cache, progress=False).f(TEXTS)
    assert failed and partial_files(cache) == []
    (key,) = os.listdir(cache)
    assert sorted(os.listdir(os.path.join(cache, key))) == ["chunk_00000.npz", "key.json"]
    monkeypatch.undo()  # space freed
    monkeypatch.setattr(extract, "CHUNK_SIZE", 2)
    sf = SentenceFeatures(lm, cache_dir=cache, progress=False)
    np.testing.assert_array_equal(sf.f(TEXTS), whole)
    assert 0 < sf.last_stats["computed_tokens"] < full_tokens  # chunk 0 came from the cache


@pytest.mark.slow
def test_cli_features_hits_a_file_size_limit_then_resumes(tmp_path):
    """The kernel refuses the write mid-file (EFBIG): the CLI names the chunk, a rerun finishes it."""
    cache, out = str(tmp_path / "cache"), str(tmp_path / "f.npz")
    args = ["features", "--model", "tiny-gpt2", "--task", "sst2", "--data", os.path.dirname(SHIPPED_SST2),
            "--split", "test", "--features", "f", "--cache-dir", cache, "--out", out]
    limit = 64 * 1024  # one chunk of 1,821 x 16 float32 is ~117 KB

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-m", "tflm.cli", *args], env=env, capture_output=True, text=True,
                          preexec_fn=small_files, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "tflm features: error: could not write" in proc.stderr and "chunk_00000.npz: File too large" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert partial_files(str(tmp_path)) == [] and not os.path.exists(out)
    assert main(args) == 0  # the limit lifted
    fresh = str(tmp_path / "fresh.npz")
    assert main(args[:-4] + ["--cache-dir", str(tmp_path / "cache2"), "--out", fresh]) == 0
    np.testing.assert_array_equal(np.load(out)["f"], np.load(fresh)["f"])


# --- results.json and an export --------------------------------------------------------------
def test_probe_results_disk_full_keeps_the_previous_results(tmp_path, monkeypatch, capsys):
    (tmp_path / "toy").mkdir()
    data = write_sst2_subset(str(tmp_path / "toy"), (("train", 12), ("dev", 2), ("test", 8)))
    out = tmp_path / "probe"
    args = ["probe", "--model", "tiny-gpt2", "--task", data, "--features", "f", "--out", str(out),
            "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0
    before = (out / "results.json").read_bytes()
    disk_full_on(monkeypatch, "results.json", errno.EIO)
    assert main(args + ["--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert f"could not write {out / 'results.json'}: Input/output error" in err
    assert (out / "results.json").read_bytes() == before and partial_files(str(out)) == []
    json.loads(before)


def test_export_disk_full_leaves_no_export_then_succeeds(tmp_path, monkeypatch):
    import tensorflow as tf

    from tflm.finetune import LMSnapshot
    from tflm.finetune.export import export_classifier

    lm = load_lm("tiny-gpt2")
    model = LMSnapshot(lm).classifier(2)
    path = tmp_path / "export"
    failed = disk_full_on(monkeypatch, "saved_model.pb")
    with pytest.raises(WriteError, match=f"could not write {path}: No space left on device"):
        export_classifier(model, str(path), lm.tokenizer, max_length=32)
    assert failed and not path.exists() and os.listdir(tmp_path) == []
    monkeypatch.undo()
    export_classifier(model, str(path), lm.tokenizer, max_length=32)
    served = tf.saved_model.load(str(path)).signatures["serving_default"]
    ids = tf.constant([[5, 6, 7]], tf.int32)
    p = served(token_ids=ids, padding_mask=tf.ones_like(ids))["probabilities"].numpy()
    np.testing.assert_allclose(p, tf.nn.softmax(model({"token_ids": ids, "padding_mask": tf.ones_like(ids)})),
                               atol=1e-6)


# --- two writers, one cache ------------------------------------------------------------------
def _features(args, cache, out):
    return [sys.executable, "-m", "tflm.cli", "features", "--model", "tiny-gpt2", "--task", "sst2",
            "--data", os.path.dirname(SHIPPED_SST2), "--split", "train", "--features", "f,phi_p",
            "--prompt", "--cache-dir", cache, "--out", out, *args]


@pytest.mark.slow
@pytest.mark.parametrize("shards", [False, True], ids=["same-chunks", "two-shards"])
def test_two_processes_fill_one_cache_at_once(tmp_path, shards):
    """6,920 SST-2 sentences are 4 chunks; both processes write them (or one shard each) at the same time."""
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    cache = str(tmp_path / "shared_cache")
    reference = str(tmp_path / "single.npz")
    subprocess.run(_features([], str(tmp_path / "own_cache"), reference), env=env, check=True, timeout=600,
                   capture_output=True)
    outs = [str(tmp_path / f"p{i}.npz") for i in range(2)]
    extra = [["--num-shards", "2", "--shard-index", str(i)] if shards else [] for i in range(2)]
    procs = [subprocess.Popen(_features(extra[i], cache, outs[i]), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    assert partial_files(cache) == []
    if shards:  # each shard wrote its chunks; a last unsharded run assembles the arrays from the cache alone
        final = str(tmp_path / "assembled.npz")
        done = subprocess.run(_features([], cache, final), env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.load(open(final + ".json"))["extraction"]["computed_tokens"] == 0
        outs = [final]
    ref = np.load(reference)
    for out in outs:
        got = np.load(out)
        for name in ("f", "phi_p", "labels"):
            np.testing.assert_array_equal(got[name], ref[name])
    # Every chunk in the shared cache is whole and checks out (key, index, rows, sha256).
    keys = sorted(os.listdir(cache))
    assert len(keys) == 1  # f of text + prompt
    for key in keys:
        chunks = sorted(f for f in os.listdir(os.path.join(cache, key)) if f.startswith("chunk_"))
        assert len(chunks) == 4
        for i in range(4):
            assert FeatureCache(cache, key).load(i, 2048 if i < 3 else 6920 - 3 * 2048).shape == (
                2048 if i < 3 else 776, 16)

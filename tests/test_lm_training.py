"""LM training: save/reload, resumable runs, MirroredStrategy, the Quad optimum, CLI errors.

Tiny GPT-2 config (d=16) on a 60-line corpus; the fresh-process checks run
`python -c` subprocesses.
"""

import json
import os
import subprocess
import sys
import textwrap

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import tflm  # noqa: E402
from conftest import shared_data  # noqa: E402
from tflm import cli  # noqa: E402
from tflm.lm.pretrain import pretrain  # noqa: E402
from tflm.lm.quad_loss import QuadLoss  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS_SRC = shared_data("corpus", "imdb_unsup", "valid.txt")
FALLBACK_TEXT = (
    "This movie was a delight from start to finish, with a clever script and warm performances. "
    "I could not stop laughing at the supporting cast, although the ending dragged a little. "
    "The photography is beautiful and the music fits every scene; I would watch it again."
)
pytestmark = pytest.mark.shared_data  # the corpus: real IMDb reviews, or a stand-in without the shared folder
TINY = dict(config="tiny", batch_size=4, seq_len=16, warmup_steps=1, verbose=0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """60 lines of real movie reviews (or a synthetic stand-in without the shared data)."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    if os.path.isfile(CORPUS_SRC):
        with open(CORPUS_SRC, encoding="utf-8") as f:
            lines = [next(f) for _ in range(60)]
    else:
        lines = [f"{FALLBACK_TEXT} Review number {i}.\n" for i in range(60)]
    path.write_text("".join(lines), encoding="utf-8")
    return str(path)


def run_python(code, args=(), timeout=300):
    """Run `code` in a fresh interpreter (with `args` as sys.argv[1:]); returns the CompletedProcess."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def last_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def max_weight_diff(u, v):
    return max(float(np.max(np.abs(keras.ops.convert_to_numpy(a) - keras.ops.convert_to_numpy(b))))
               for a, b in zip(u, v))


class CaptureModel(keras.callbacks.Callback):
    """Keeps the trained `CausalLM` (via the `callbacks=` hook of `pretrain`)."""

    def on_train_end(self, logs=None):
        self.trained = self.model


# Quad, untied learned Phi, default jit_compile=True; 2 intervals of 2 steps.
QUAD_RUN = dict(objective="quad", untied=True, steps=4, checkpoint_every=2, jit_compile=True, **TINY)


@pytest.fixture(scope="module")
def quad_run(corpus, tmp_path_factory):
    """One uninterrupted Quad run, shared: the in-process model and its output dir."""
    out = tmp_path_factory.mktemp("quad_run") / "run"
    cap = CaptureModel()
    card = pretrain(corpus=corpus, out_dir=str(out), callbacks=[cap], **QUAD_RUN)
    return card, cap.trained, out


# --- save / reload in a fresh process ------------------------------------------
@pytest.mark.slow
def test_pretrain_save_reload_fresh_process(corpus, quad_run, tmp_path):
    rng = np.random.default_rng(0)
    token_ids = rng.integers(0, 50257, size=(2, 16)).astype("int32")
    padding_mask = np.ones((2, 16), "int32")
    padding_mask[1, 10:] = 0
    np.save(tmp_path / "token_ids.npy", token_ids)
    np.save(tmp_path / "padding_mask.npy", padding_mask)

    cap = CaptureModel()
    xent_card = pretrain(objective="xent", corpus=corpus, out_dir=str(tmp_path / "xent"), steps=2,
                         checkpoint_every=2, jit_compile=False, callbacks=[cap], **TINY)
    quad_card, quad_model, quad_out = quad_run
    models = {"xent": (xent_card, cap.trained, tmp_path / "xent" / "model"),
              "quad": (quad_card, quad_model, quad_out / "model")}
    for name, (card, model, _) in models.items():
        assert (model.head is not None) == (name == "quad")
        assert card["objective"] == name and np.isfinite(card["history"]["loss"][-1])
        logits = keras.ops.convert_to_numpy(model.logits(token_ids, padding_mask))
        assert logits.shape == (2, 16, 50257) and np.all(np.isfinite(logits))
        np.save(tmp_path / f"{name}_logits.npy", logits)
    paths = {name: str(m[2]) for name, m in models.items()}
    proc = run_python(f"""
        import json, numpy as np, keras, tflm
        d = {str(tmp_path)!r}
        ids, mask = np.load(d + "/token_ids.npy"), np.load(d + "/padding_mask.npy")
        out = {{}}
        for name, path in {paths!r}.items():
            lm = tflm.load_lm(path)
            got = keras.ops.convert_to_numpy(lm.logits(ids, mask))
            ref = np.load(d + "/" + name + "_logits.npy")
            out[name] = [float(np.max(np.abs(got - ref))), lm.tied, lm.metadata.get("objective")]
        print(json.dumps(out))
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = last_json(proc.stdout)
    assert res["xent"][0] <= 1e-6 and res["xent"][1:] == [True, "xent"], res
    assert res["quad"][0] <= 1e-6 and res["quad"][1:] == [False, "quad"], res


# --- BackupAndRestore: kill mid-run, rerun, compare with an uninterrupted run ------
@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted(corpus, quad_run, tmp_path):
    # jit_compile=True (the default): XLA on CPU is deterministic run-to-run
    # here (checked), so the resumed run must match the uninterrupted one.
    killed = tmp_path / "killed"
    proc = run_python(f"""
        import os, keras
        from tflm.lm.pretrain import pretrain

        class KillAfter(keras.callbacks.Callback):
            def __init__(self, n):
                super().__init__()
                self.n, self.seen = n, 0

            def on_train_batch_end(self, batch, logs=None):
                self.seen += 1
                if self.seen == self.n:
                    os._exit(17)  # a hard kill: no epoch end, no backup, no cleanup

        pretrain(corpus={corpus!r}, out_dir={str(killed)!r}, callbacks=[KillAfter(3)], **{QUAD_RUN!r})
    """)
    assert proc.returncode == 17, proc.stderr[-3000:]
    with open(killed / "backup" / "backup.json") as f:
        assert json.load(f)["epoch"] == 1  # backup after step 2; killed after step 3
    assert not os.path.exists(killed / "model")

    resumed = pretrain(corpus=corpus, out_dir=str(killed), **QUAD_RUN)  # the same call again
    assert len(resumed["history"]["loss"]) == 1  # only the second interval was run
    assert sorted(os.listdir(killed / "checkpoints")) == ["step_0000002", "step_0000004"]

    full_card, full_model, full_out = quad_run
    assert len(full_card["history"]["loss"]) == 2
    np.testing.assert_allclose(resumed["history"]["loss"], full_card["history"]["loss"][1:], rtol=1e-6)
    a = tflm.load_lm(str(killed / "model"))
    b = tflm.load_lm(str(full_out / "model"))
    assert [w.path for w in a.weights()] == [w.path for w in b.weights()]
    diff = max_weight_diff(a.weights(), b.weights())
    assert diff <= 1e-5, diff
    # Not vacuous: the second interval moved the weights away from the step-2 backup point.
    at2 = tflm.load_lm(str(killed / "checkpoints" / "step_0000002"))
    assert max_weight_diff(at2.weights(), b.weights()) > 1e-3


@pytest.mark.slow
def test_checkpoint_write_fails_on_a_full_disk_then_resumes(corpus, quad_run, tmp_path, monkeypatch):
    """ENOSPC while the step-4 checkpoint is flushed: the run stops naming it, the interval is not
    backed up, nothing partial stays, and the same call again ends where an uninterrupted run ends."""
    from conftest import disk_full_on, partial_files
    from tflm.atomic import WriteError

    out = tmp_path / "run"
    failed = disk_full_on(monkeypatch, "step_0000004")
    with pytest.raises(WriteError, match=r"could not write .*checkpoints/step_0000004: No space left"):
        pretrain(corpus=corpus, out_dir=str(out), **QUAD_RUN)
    assert failed and partial_files(str(out)) == []
    assert sorted(os.listdir(out / "checkpoints")) == ["step_0000002"]
    with open(out / "backup" / "backup.json") as f:
        assert json.load(f)["epoch"] == 1  # the failed interval was not committed
    monkeypatch.undo()  # space freed
    resumed = pretrain(corpus=corpus, out_dir=str(out), **QUAD_RUN)
    assert len(resumed["history"]["loss"]) == 1
    assert sorted(os.listdir(out / "checkpoints")) == ["step_0000002", "step_0000004"]
    _, _, full_out = quad_run
    assert max_weight_diff(tflm.load_lm(str(out / "model")).weights(),
                           tflm.load_lm(str(full_out / "model")).weights()) <= 1e-5


# --- MirroredStrategy over two logical CPUs = single device ---------------------
MIRRORED_SCRIPT = """
import tensorflow as tf
tf.config.set_visible_devices([], "GPU")  # two logical CPUs are the replicas, also on a GPU machine
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import json, sys, numpy as np, keras
from tflm.distribute import get_strategy
from tflm.lm.pretrain import build_causal_lm, pretrain

B, T, V = 4, 16, 50257
rng = np.random.default_rng(0)
ids = rng.integers(0, V, size=(B, T + 1)).astype("int32")
x = {"token_ids": ids[:, :-1], "padding_mask": np.ones((B, T), "int32")}
y = ids[:, 1:]
# Uneven target masks: replica 1 (rows 2-3) holds far fewer real targets than replica 0,
# so the global masked mean is not the mean of the replicas' means.
mask = np.ones((B, T), "float32")
mask[2:, 5:] = 0.0
mask[0, 12:] = 0.0
CASES = [  # (name, objective, untied, fix_phi, jit_compile)
    ("xent-uneven-jit", "xent", False, False, True),
    ("quad-fixphi-uneven", "quad", True, True, False),
]

def train(strategy, objective, untied, fix_phi, mask, jit, init):
    strat = get_strategy(strategy)  # one MirroredStrategy per process (get_strategy caches it)
    with strat.scope():
        keras.utils.set_random_seed(0)
        model, _ = build_causal_lm(objective, "tiny", untied=untied, fix_phi=fix_phi)
        model(x)
        if init is not None:
            model.set_weights(init)
        w0 = [np.asarray(w) for w in model.get_weights()]
        model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=jit)
    ds = tf.data.Dataset.from_tensor_slices((x, y, mask)).batch(B).repeat()
    hist = model.fit(ds, epochs=2, steps_per_epoch=1, verbose=0)  # one step per "epoch"
    weights = [np.asarray(w) for w in model.get_weights()]
    return strat.num_replicas_in_sync, hist.history["loss"], w0, weights, model.jit_compile

def maxdiff(u, v):
    return max(float(np.max(np.abs(a - b))) for a, b in zip(u, v))

out = {}
for name, objective, untied, fix_phi, jit in CASES:
    n1, loss1, w0, w1, _ = train("one", objective, untied, fix_phi, mask, jit, None)
    n2, loss2, _, w2, jit2 = train("mirrored", objective, untied, fix_phi, mask, jit, w0)
    out[name] = dict(replicas=[n1, n2], loss1=loss1, loss2=loss2, wdiff=maxdiff(w1, w2), jit2=jit2,
                     wscale=max(float(np.max(np.abs(a))) for a in w1), moved=maxdiff(w0, w1))

# End to end: `pretrain --strategy mirrored` (default jit_compile=True, AdamW with
# global clipnorm 1.0 -- active: the gradient norm is ~100 --, the tf.data
# pipeline split over replicas) against one device.
class Keep(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.w0 = [np.asarray(w) for w in self.model.get_weights()]

    def on_train_end(self, logs=None):
        self.weights = [np.asarray(w) for w in self.model.get_weights()]
        self.jit = self.model.jit_compile

runs = {}
for strategy in ("one", "mirrored"):
    keep = Keep()
    card = pretrain(objective="quad", corpus=sys.argv[1], out_dir=f"{sys.argv[2]}/{strategy}", untied=True, config="tiny",
                    steps=3, checkpoint_every=3, batch_size=4, seq_len=16, warmup_steps=1, lr=1e-2,
                    strategy=strategy, verbose=0, callbacks=[keep])
    runs[strategy] = (card, keep)
(c1, k1), (c2, k2) = runs["one"], runs["mirrored"]
out["pretrain-quad"] = dict(
    replicas=[c1["num_replicas"], c2["num_replicas"]], loss1=c1["history"]["loss"],
    loss2=c2["history"]["loss"], wdiff=maxdiff(k1.weights, k2.weights), jit2=k2.jit,
    wscale=max(float(np.max(np.abs(a))) for a in k1.weights), moved=maxdiff(k1.w0, k1.weights))
print(json.dumps(out))
"""


@pytest.mark.slow
def test_mirrored_two_cpus_matches_single_device(corpus, tmp_path):
    proc = run_python(MIRRORED_SCRIPT, args=[corpus, str(tmp_path)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = last_json(proc.stdout)
    assert set(res) == {"xent-uneven-jit", "quad-fixphi-uneven", "pretrain-quad"}
    for key, r in res.items():
        assert r["replicas"] == [1, 2], (key, r)
        assert r["jit2"] is False, (key, r)  # XLA falls back to graph mode for replicas on CPUs
        np.testing.assert_allclose(r["loss2"], r["loss1"], rtol=1e-5, err_msg=key)
        assert r["moved"] > 1e-3, (key, r)  # the SGD steps really changed the weights
        assert r["wdiff"] <= 1e-5 * max(r["wscale"], 1.0), (key, r)


# --- Quad optimum: theta* = (Phi Phi^T)^-1 Phi p*, excess loss is quadratic -------
def test_quad_optimum_and_excess_loss():
    rng = np.random.default_rng(0)
    V, d, C = 12, 4, 6
    phi = rng.normal(size=(V, d))  # tflm's storage: row w is phi_w; the paper's Phi is phi.T (d x V)
    p_star = rng.dirichlet(np.ones(V), size=C)  # the next-word distribution of each context
    gram = phi.T @ phi  # Phi Phi^T
    theta_star = np.linalg.solve(gram, phi.T @ p_star.T).T  # (C, d)

    quad = QuadLoss(dtype="float64")
    targets = tf.constant(np.tile(np.arange(V, dtype=np.int32), (C, 1)))  # (C, V): every next word
    weights = tf.constant(p_star)  # mask = p*(w): the exact expectation over next words
    phi_t = tf.constant(phi)

    def expected_loss(theta):  # (C, d) -> mean over contexts of E_{w ~ p*_c} l_quad(theta_c, w)
        feats = tf.repeat(tf.convert_to_tensor(theta, tf.float64)[:, None, :], V, axis=1)
        return quad(feats, phi_t, targets, weights)

    # Learn one free feature vector per context with tflm's QuadLoss (Phi frozen).
    thetas = [keras.Variable(np.zeros(d), dtype="float64", name=f"theta_{c}") for c in range(C)]
    opt = keras.optimizers.SGD(learning_rate=C / np.linalg.eigvalsh(gram).max())  # 1/L

    @tf.function
    def steps(n):
        for _ in tf.range(n):
            with tf.GradientTape() as tape:
                loss = expected_loss(tf.stack([t.value for t in thetas]))
            opt.apply_gradients(zip(tape.gradient(loss, [t.value for t in thetas]), thetas))

    steps(tf.constant(3000))
    learned = np.stack([keras.ops.convert_to_numpy(t) for t in thetas])
    np.testing.assert_allclose(learned, theta_star, atol=1e-8)
    # The residual p* - Phi^T theta* is orthogonal to the rows of Phi (a projection).
    np.testing.assert_allclose(phi.T @ (p_star.T - phi @ theta_star.T), 0, atol=1e-10)

    l_star = float(expected_loss(theta_star))
    # l(theta*) = -1/2 ||Phi^T theta*||^2 (per context, then averaged).
    np.testing.assert_allclose(l_star, np.mean(-0.5 * np.sum((phi @ theta_star.T) ** 2, 0)), rtol=1e-10)
    one = QuadLoss(dtype="float64")
    for _ in range(5):
        theta = theta_star + rng.normal(size=(C, d)) * rng.uniform(0.1, 3)
        excess = float(expected_loss(theta)) - l_star
        predicted = np.mean(0.5 * np.sum((phi @ (theta - theta_star).T) ** 2, 0))
        assert abs(excess - predicted) <= 1e-8 * max(1.0, predicted), (excess, predicted)
        # Per context (a single-row batch) too.
        c = int(rng.integers(C))

        def loss_c(th):
            return float(one(np.tile(th, (1, V, 1)), phi, np.arange(V)[None], p_star[c][None]))

        exc_c = loss_c(theta[c]) - loss_c(theta_star[c])
        pred_c = 0.5 * np.sum((phi @ (theta[c] - theta_star[c])) ** 2)
        assert abs(exc_c - pred_c) <= 1e-8 * max(1.0, pred_c), (exc_c, pred_c)


# --- CLI: bad input gives exit code 2 and one error line; the happy path works -------
@pytest.mark.parametrize(
    "case, expected",
    [
        ("empty", "empty corpus"),
        ("missing", "corpus not found"),
        ("short", "shorter than one block"),
        ("unknown_config", "unknown config 'huge'"),
        ("fix_phi_tied", "fix_phi needs an untied head"),
        ("zero_steps", "steps must be positive"),
    ],
)
def test_cli_pretrain_bad_input(case, expected, corpus, tmp_path, capsys):
    src, config, extra = corpus, "tiny", []
    if case == "empty":
        src = tmp_path / "empty.txt"
        src.write_text("\n  \n\n")
    elif case == "missing":
        src = tmp_path / "nope.txt"
    elif case == "short":
        src = tmp_path / "short.txt"
        src.write_text("Too short.\n")
    elif case == "unknown_config":
        config = "huge"
    elif case == "fix_phi_tied":
        extra = ["--fix-phi"]
    elif case == "zero_steps":
        extra = ["--steps", "0"]
    argv = ["pretrain", "--objective", "quad", "--corpus", str(src), "--out", str(tmp_path / "out"),
            "--config", config, "--seq-len", "32", "--steps", "2", "--checkpoint-every", "2", "--no-jit"]
    rc = cli.main(argv + extra)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith("tflm pretrain: error: ") and expected in lines[0], lines[0]
    assert not os.path.exists(tmp_path / "out" / "model")


def test_cli_pretrain_end_to_end(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli.main(["pretrain", "--objective", "quad", "--untied", "--fix-phi", "--corpus", corpus,
                   "--valid", corpus, "--out", str(out), "--config", "tiny", "--steps", "2",
                   "--checkpoint-every", "1", "--batch-size", "4", "--seq-len", "16",
                   "--warmup-steps", "1", "--no-jit"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert f"model written to {out / 'model'}" in captured.out
    with open(out / "model" / "model_card.json") as f:
        card = json.load(f)
    assert card["objective"] == "quad" and card["untied"] and card["fixed_phi"]
    assert card["steps"] == 2 and card["tokens_seen"] == 2 * 4 * 16
    assert np.isfinite(card["val_perplexity"]) and card["val_perplexity"] > 1
    assert os.path.isdir(out / "checkpoints" / "step_0000002")
    lm = tflm.load_lm(str(out / "model"))
    assert not lm.tied and lm.metadata["objective"] == "quad"

"""`pretrain` as config + stages: any step count, the last step checkpointed, Quad's logs, whitened saves."""

import json
import os
import warnings

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tflm  # noqa: E402
from tflm import cli  # noqa: E402
from tflm.lm.pretrain import PretrainConfig, pretrain  # noqa: E402
from tflm.models.untied_head import inverse_sqrt_gram  # noqa: E402

TEXT = ("This movie was a delight from start to finish, with a clever script and warm performances. "
        "I could not stop laughing at the supporting cast, although the ending dragged a little. ")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "reviews.txt"
    path.write_text("".join(f"{TEXT} Review {i}.\n" for i in range(30)), encoding="utf-8")
    return str(path)


class Keep(keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        self.trained = self.model


def test_fixed_phi_quad_run_any_steps_whitened_and_saved(corpus, tmp_path):
    out = tmp_path / "run"
    keep = Keep()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        card = pretrain(objective="quad", corpus=corpus, valid=corpus, out_dir=str(out), config="tiny",
                        untied=True, fix_phi=True, steps=5, checkpoint_every=2, batch_size=4, seq_len=16,
                        warmup_steps=1, lr=1e-2, verbose=0, jit_compile=False, callbacks=[keep])
    assert not [w for w in caught if "shuffle" in str(w.message)], [str(w.message) for w in caught]
    # 5 steps in intervals of 2: checkpoints at 2, 4 and the last step.
    assert sorted(os.listdir(out / "checkpoints")) == ["step_0000002", "step_0000004", "step_0000005"]
    assert card["steps"] == 5 and card["tokens_seen"] == 5 * 4 * 16 and len(card["history"]["loss"]) == 3
    # Quad trains without the V-dim softmax: no training softmax_xent (no 0 in the progress bar), a real val one.
    assert "softmax_xent" not in card["history"]
    assert all(x > 1.0 for x in card["history"]["val_softmax_xent"])
    # The card names the corpus and its hash, no machine path.
    assert card["corpus"] == "/".join(corpus.split(os.sep)[-2:]) and len(card["corpus_sha256"]) == 64
    assert card["whiten"] is True and not any(os.sep + "tmp" in str(v) for v in card.values())
    # The saved model's f is the real f = G^-1/2 g.
    lm = tflm.load_lm(str(out / "model"))
    assert lm.head.whiten
    ids, mask = np.arange(32).reshape(2, 16), np.ones((2, 16), "int32")
    h = lm.hidden_states(ids, mask)
    g = keras.ops.convert_to_numpy(lm.head.f_lin(h))
    w = inverse_sqrt_gram(keras.ops.convert_to_numpy(lm.head.phi))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(lm.features(ids, mask)), g @ w, rtol=2e-2, atol=1e-4)
    trained = keras.ops.convert_to_numpy(keep.trained({"token_ids": ids, "padding_mask": mask}))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(lm.features(ids, mask)), trained, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_cli_pretrain_steps_below_checkpoint_every(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli.main(["pretrain", "--objective", "xent", "--corpus", corpus, "--out", str(out), "--config", "tiny",
                   "--steps", "3", "--batch-size", "4", "--seq-len", "16", "--warmup-steps", "1", "--no-jit"])
    assert rc == 0, capsys.readouterr().err
    assert os.listdir(out / "checkpoints") == ["step_0000003"]
    with open(out / "model" / "model_card.json") as f:
        assert json.load(f)["steps"] == 3


@pytest.mark.parametrize("fields, message", [
    (dict(steps=0), "steps must be positive"),
    (dict(objective="mse"), "objective='mse'"),
    (dict(fix_phi=True), "fix_phi needs an untied head"),
    (dict(whiten=True, untied=True), "whiten=True is for the Quad objective with a frozen Phi"),
    (dict(lr=0.0), "lr must be positive"),
])
def test_config_errors_name_fields_not_flags(fields, message):
    base = dict(objective="quad", corpus="c.txt", out_dir="o")
    with pytest.raises(ValueError, match=message) as e:
        PretrainConfig(**{**base, **fields})
    assert "--" not in str(e.value)


def test_card_records_no_absolute_paths():
    cfg = PretrainConfig(objective="xent", corpus="/data/machine/corpus/train.txt", out_dir="o",
                         command="tflm pretrain --corpus /data/machine/corpus/train.txt --steps 3")
    card = cfg.card()
    assert card["corpus"] == "corpus/train.txt"
    assert card["command"] == "tflm pretrain --corpus corpus/train.txt --steps 3"

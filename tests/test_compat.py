"""`tflm._compat`: every private Keras / TensorFlow / keras-hub name tflm relies on still exists and behaves.

These tests fail loudly on a library upgrade that renames or changes one of
them; update `tflm/_compat.py` (and its `TESTED` versions) then.
"""

import inspect
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tflm import _compat  # noqa: E402


def _params(fn):
    return list(inspect.signature(fn).parameters)


@pytest.mark.parametrize("library", sorted(_compat.TESTED))
def test_installed_versions_are_the_verified_ones(library):
    assert _compat.check_version(library), (library, _compat._version(library), _compat.TESTED[library])


def test_check_version_warns_once_for_an_unverified_version(monkeypatch):
    monkeypatch.setitem(_compat.TESTED, "keras", ("0.0",))
    monkeypatch.setattr(_compat, "_warned", set())
    with pytest.warns(RuntimeWarning, match="verified with keras 0.0") as record:
        assert not _compat.check_version("keras")
        assert not _compat.check_version("keras")
    assert len(record) == 1


# --- keras-hub ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gpt2", "llama3"])
def test_keras_hub_converters(name):
    module = _compat.keras_hub_transformers_converter(name)
    assert _params(module.convert_weights) == ["backbone", "loader", "transformers_config"]
    # The converters port through `loader.port_weight(keras_variable=..., hf_weight_key=..., hook_fn=...)`.
    source = inspect.getsource(module.convert_weights)
    assert "port_weight(" in source and "hf_weight_key" in source


def test_keras_hub_get_file():
    from keras_hub.src.utils import preset_utils

    assert _params(preset_utils.get_file) == ["preset", "path"]


# --- Keras layers --------------------------------------------------------------------------
def test_seed_generators_finds_every_dropout_generator():
    inner = keras.Sequential([keras.layers.Dropout(0.5, name="a")], name="inner")
    model = keras.Sequential([keras.Input((3,)), inner, keras.layers.Dropout(0.1, name="b")])
    assert _params(keras.layers.Layer._flatten_layers) == ["self", "include_self", "recursive"]
    gens = _compat.seed_generators(model)
    assert len(gens) == 2 and all(isinstance(g, keras.random.SeedGenerator) for g in gens)
    # The generators drive the masks: resetting their state reproduces a mask.
    x = np.ones((4, 3), "float32")
    state = [np.array(g.state.numpy()) for g in gens]
    first = np.asarray(model(x, training=True))
    for g, s in zip(gens, state):
        g.state.assign(s)
    np.testing.assert_array_equal(np.asarray(model(x, training=True)), first)


# --- Keras callbacks -----------------------------------------------------------------------
class _Recorder(_compat.BackupAndRestoreHooks):
    def __init__(self, backup_dir, resume_at):
        super().__init__(backup_dir)
        self.resume_at, self.saved = resume_at, []

    def load_backup(self):
        return self.resume_at

    def save_backup(self, epoch):
        self.saved.append(epoch)


def _tiny_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_backup_and_restore_hooks_resume_and_save(tmp_path):
    base = keras.callbacks.BackupAndRestore
    assert _params(base._load_model) == ["self"] and _params(base._save_model) == ["self"]
    x, y = np.ones((4, 2), "float32"), np.ones((4, 1), "float32")
    rec = _Recorder(str(tmp_path), resume_at=2)
    history = _tiny_model().fit(x, y, epochs=4, verbose=0, callbacks=[rec])
    assert history.epoch == [2, 3]  # `_initial_epoch` made fit skip the two backed-up epochs
    assert rec.saved == [3, 4]  # `_current_epoch`: completed epochs at each save
    fresh = _Recorder(str(tmp_path), resume_at=0)
    assert _tiny_model().fit(x, y, epochs=2, verbose=0, callbacks=[fresh]).epoch == [0, 1]
    assert fresh.saved == [1, 2]


# --- Keras TensorFlow trainer --------------------------------------------------------------
def test_maybe_symbolic_build_is_replaced_by_the_dummy_batch():
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    assert _params(TensorFlowTrainer._maybe_symbolic_build) == ["self", "iterator", "data_batch"]
    seen = []

    class Model(_compat.FixedSignatureBuild, keras.Model):
        def dummy_batch(self):
            seen.append(True)
            return np.zeros((1, 2), "float32"), np.zeros((1, 1), "float32")

    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():  # Keras builds symbolically only under a strategy
        inputs = keras.Input((2,))
        model = Model(inputs, keras.layers.Dense(1)(inputs))
        model.compile(optimizer="sgd", loss="mse")
    ds = tf.data.Dataset.from_tensor_slices((np.ones((4, 2), "float32"), np.ones((4, 1), "float32"))).batch(2)
    model.fit(ds, epochs=1, verbose=0)
    assert seen  # Keras asked for a symbolic build and got the dummy batch


def test_multi_worker_mode_and_step_logs():
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])
    assert callable(mirrored.extended._in_multi_worker_mode)
    assert _compat.in_multi_worker_mode(mirrored) is False
    assert _compat.in_multi_worker_mode(tf.distribute.get_strategy()) is False
    logs = {"loss": tf.constant(1.5)}
    assert _compat.multi_worker_step_logs(mirrored, logs) is logs
    # The multi-worker reduction the reshape works around is still Keras' own.
    from keras.src.backend.tensorflow import trainer

    assert "_in_multi_worker_mode()" in inspect.getsource(trainer._collective_all_reduce_multi_worker)


# --- Keras optimizers ----------------------------------------------------------------------
def test_clip_gradients_hook():
    assert _params(keras.optimizers.Optimizer._clip_gradients) == ["self", "grads"]
    calls = []

    class SGD(_compat.ClipGradientsHook, keras.optimizers.SGD):
        def clip_gradients(self, grads):
            calls.append(len(grads))
            return self.keras_clip_gradients(grads)

    opt = SGD(learning_rate=1.0, global_clipnorm=1.0)
    v = keras.Variable(np.zeros(2, "float32"))
    opt.apply_gradients([(tf.constant([3.0, 4.0]), v)])
    assert calls == [1]
    np.testing.assert_allclose(np.asarray(v), [-0.6, -0.8], rtol=1e-6)  # Keras' own global-norm clip

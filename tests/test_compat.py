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


def _tiny_llama3(dtype="float32", seed=0):
    import keras_hub

    keras.utils.set_random_seed(seed)
    return keras_hub.models.Llama3Backbone(
        vocabulary_size=97, num_layers=2, num_query_heads=4, num_key_value_heads=2, hidden_dim=64,
        intermediate_dim=96, dtype=dtype)


def _padded_batch(length=11):
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 97, (3, length)).astype("int32")
    mask = np.ones_like(ids)
    mask[1, 2 * length // 3:] = 0
    mask[2, 3:] = 0
    return {"token_ids": ids, "padding_mask": mask}


def test_llama_attention_private_names():
    from keras_hub.src.models.llama.llama_attention import LlamaAttention
    from keras_hub.src.utils.keras_utils import fused_attention_op_available

    assert _params(LlamaAttention._compute_attention) == ["self", "query", "key", "value", "attention_mask"]
    assert not fused_attention_op_available()  # TensorFlow takes keras-hub's unfused path
    layer = _tiny_llama3().transformer_layers[0]._self_attention_layer
    assert isinstance(layer, LlamaAttention)
    assert layer._dot_product_equation == "bquh,bkuh->buqk" and layer._combine_equation == "buqk,bkuh->bquh"
    assert float(layer._inv_norm_factor) == pytest.approx(1 / 4)  # head_dim 16


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-6), ("mixed_bfloat16", 2e-2)])
@pytest.mark.parametrize("scale", [1.0, 30.0])  # 30: large scores, a peaked softmax
@pytest.mark.parametrize("length", [11, 301])
def test_install_llama_attention_matches_keras_hub(dtype, tol, scale, length):
    from keras_hub.src.models.llama.llama_attention import LlamaAttention

    backbone = _tiny_llama3(dtype)
    for layer in backbone.transformer_layers:
        kernel = layer._self_attention_layer._query_dense.kernel
        kernel.assign(kernel * scale)
    batch = _padded_batch(length)
    ref = keras.ops.convert_to_numpy(keras.ops.cast(backbone(batch), "float32"))
    other = _tiny_llama3(dtype)
    assert _compat.install_llama_attention(backbone) == 2
    got = keras.ops.convert_to_numpy(keras.ops.cast(backbone(batch), "float32"))
    real = batch["padding_mask"].astype(bool)
    err = np.abs(got - ref)[real].max() / np.abs(ref[real]).max()
    assert err <= tol, err
    # per instance: another backbone in the process keeps keras-hub's method
    assert all("_compute_attention" not in vars(layer._self_attention_layer) for layer in other.transformer_layers)
    assert LlamaAttention._compute_attention is not _compat._llama_attention


def test_install_llama_attention_gradients_match():
    batch = _padded_batch()

    def grads(install):
        backbone = _tiny_llama3("float32", seed=1)
        if install:
            _compat.install_llama_attention(backbone)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(backbone(batch)))
        return [None if g is None else tf.convert_to_tensor(g).numpy()
                for g in tape.gradient(loss, backbone.trainable_weights)]

    ref, got = grads(False), grads(True)
    assert [g is None for g in ref] == [g is None for g in got] and sum(g is not None for g in ref) > 10
    for a, b in zip(ref, got):
        if a is not None:
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


def test_llama_attention_call_private_names():
    from keras_hub.src.layers.modeling.rotary_embedding import RotaryEmbedding
    from keras_hub.src.models.llama.llama_attention import LlamaAttention
    from keras_hub.src.vllm.context import get_vllm_context

    assert _params(LlamaAttention.call) == ["self", "hidden_states", "attention_mask", "cache", "cache_update_index",
                                            "training"]
    assert _params(RotaryEmbedding.call) == ["self", "inputs", "start_index", "positions"]
    assert get_vllm_context() is None or get_vllm_context().paged_attention_func is None
    layer = _tiny_llama3().transformer_layers[0]._self_attention_layer
    for name in ("_query_dense", "_key_dense", "_value_dense", "_dropout_layer", "_output_dense",
                 "rotary_embedding_layer", "num_key_value_groups"):
        assert hasattr(layer, name), name


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_grouped_attention_equals_keras_hub_repeated_kv_exactly(groups):
    """Grouped-query attention on K/V as they are == keras-hub's repeated K/V path, bit for bit (float32)."""
    from keras_hub.src.models.llama.llama_attention import LlamaAttention

    layer = _tiny_llama3().transformer_layers[0]._self_attention_layer
    rng = np.random.default_rng(groups)
    q = tf.constant(rng.standard_normal((2, 9, 4, 16)), tf.float32)
    k, v = (tf.constant(rng.standard_normal((2, 9, 4 // groups, 16)), tf.float32) for _ in range(2))
    mask = np.tril(np.ones((9, 9), np.int32))[None].repeat(2, 0)
    mask[1, :, 5:] = 0
    kr, vr = (tf.repeat(x, groups, axis=2) for x in (k, v))
    ref = LlamaAttention._compute_attention(layer, q, kr, vr, tf.constant(mask)).numpy()
    np.testing.assert_array_equal(_compat._llama_attention(layer, q, k, v, tf.constant(mask)).numpy(), ref)
    np.testing.assert_array_equal(_compat._llama_attention(layer, q, kr, vr, tf.constant(mask)).numpy(), ref)


def test_llama_attention_call_positions_and_cache():
    from keras_hub.src.models.llama.llama_attention import LlamaAttention

    backbone, twin = _tiny_llama3(), _tiny_llama3()
    assert _compat.install_llama_attention(backbone) == 2
    layer, plain = backbone.transformer_layers[0]._self_attention_layer, twin.transformer_layers[0]._self_attention_layer
    assert _compat.has_llama_attention_call(layer) and not _compat.has_llama_attention_call(plain)
    assert "call" not in vars(plain) and LlamaAttention.call is not _compat._llama_attention_call
    x = tf.constant(np.random.default_rng(0).standard_normal((2, 7, 64)), tf.float32)
    mask = tf.constant(np.tril(np.ones((7, 7), np.int32))[None].repeat(2, 0))
    ref = plain(x, attention_mask=mask).numpy()
    np.testing.assert_array_equal(layer(x, attention_mask=mask).numpy(), ref)
    with _compat.rope_positions(tf.constant(np.tile(np.arange(7, dtype=np.int32), (2, 1)))):
        np.testing.assert_array_equal(layer(x, attention_mask=mask).numpy(), ref)  # default positions, explicit
    with _compat.rope_positions(tf.zeros((2, 7), tf.int32)):
        assert np.abs(layer(x, attention_mask=mask).numpy() - ref).max() > 1e-3 * np.abs(ref).max()  # no rotation
    np.testing.assert_array_equal(layer(x, attention_mask=mask).numpy(), ref)  # the block is left
    # with a cache (generation) keras-hub's own call runs, its repeated K/V through the grouped scores
    cache = tf.zeros((2, 2, 7, 2, 16))
    got, got_cache = layer(x, attention_mask=mask, cache=cache, cache_update_index=0)
    want, want_cache = plain(x, attention_mask=mask, cache=cache, cache_update_index=0)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-6)
    np.testing.assert_array_equal(got_cache.numpy(), want_cache.numpy())


def test_language_models_get_the_attention_path():
    import tflm

    lm = tflm.load_lm("tiny-llama")
    installed = ["_compute_attention" in vars(layer._self_attention_layer) for layer in lm.backbone.transformer_layers]
    assert installed and all(installed)
    bf16 = lm.with_dtype("bfloat16")  # a rebuilt backbone gets it too
    assert all("_compute_attention" in vars(layer._self_attention_layer) for layer in bf16.backbone.transformer_layers)
    assert _compat.install_llama_attention(tflm.load_lm("tiny-gpt2").backbone) == 0  # GPT-2: nothing to replace


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
    model = _tiny_model()  # resumed once, then fitted again from scratch (a grid's next run)
    assert model.fit(x, y, epochs=4, verbose=0, callbacks=[_Recorder(str(tmp_path), resume_at=2)]).epoch == [2, 3]
    assert model.fit(x, y, epochs=2, verbose=0, callbacks=[_Recorder(str(tmp_path), resume_at=0)]).epoch == [0, 1]


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


def test_bounded_gguf_reader_refuses_reads_past_the_end(tmp_path):
    """gguf's private `GGUFReader._get(offset, dtype, count, override_order)` is what the bound wraps;
    a valid file reads as with GGUFReader, a truncated one fails with the bound's message."""
    import gguf

    assert _params(gguf.GGUFReader._get) == ["self", "offset", "dtype", "count", "override_order"]
    path = tmp_path / "t.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.arange(16, dtype=np.float32).reshape(2, 8))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    ours, theirs = _compat.bounded_gguf_reader(path), gguf.GGUFReader(path)
    assert list(ours.fields) == list(theirs.fields)
    np.testing.assert_array_equal(ours.tensors[0].data, theirs.tensors[0].data)
    data = path.read_bytes()
    (tmp_path / "short.gguf").write_bytes(data[:-8])  # the tensor's last 2 floats are gone
    with pytest.raises(ValueError, match="runs past the end of the file"):
        _compat.bounded_gguf_reader(tmp_path / "short.gguf")

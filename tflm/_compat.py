"""Every use of private Keras, TensorFlow and keras-hub code in tflm, in one place.

Each entry names the library versions it was written and verified against
(`TESTED`); on other versions a warning says so once. `tests/test_compat.py`
asserts that every private name used here still exists with the signature
relied on, so an upgrade that changes one fails loudly there instead of
silently turning an override into dead code.

Entries:
    * `keras_hub_transformers_converter(name)`: keras-hub's Hugging Face weight
      layouts (`keras_hub.src.utils.transformers.convert_<name>`).
    * `keras_hub_get_file(preset, path)`: keras-hub's preset file download.
    * `install_llama_attention(backbone)`: a faster `LlamaAttention._compute_attention`
      (the TensorFlow path: same math, fewer passes over the (B, H, T, T) scores, grouped-query
      attention without repeated K/V) and a `LlamaAttention.call` that rotates at per-token
      positions (`rope_positions`, for packed rows) on the attention layers of one backbone.
    * `seed_generators(model)`: every `SeedGenerator` of a model
      (`Layer._flatten_layers`, `Layer._seed_generators`).
    * `BackupAndRestoreHooks`: `keras.callbacks.BackupAndRestore` with its
      private `_load_model` / `_save_model` / `_current_epoch` and the model's
      `_initial_epoch` behind public-named hooks.
    * `FixedSignatureBuild`: replaces `Model._maybe_symbolic_build` (TF trainer)
      by a build from a dummy batch.
    * `in_multi_worker_mode(strategy)`: `strategy.extended._in_multi_worker_mode()`;
      `multi_worker_step_logs` works around Keras' reduction of scalar step logs there.
    * `ClipGradientsHook`: `Optimizer._clip_gradients` behind a public-named hook.
    * `bounded_gguf_reader(path)`: `gguf.GGUFReader` whose private `_get` refuses a read
      past the end of the file (gguf 0.19 silently returns a short or empty array there,
      so a lying array length loops for ever and a lying tensor size goes unnoticed).
"""

import contextlib
import contextvars
import importlib
import types
import warnings

import keras

TESTED = {"keras": ("3.15",), "keras_hub": ("0.32",), "tensorflow": ("2.21",), "gguf": ("0.19",)}
_warned = set()


def _version(library):
    module = importlib.import_module(library)
    if hasattr(module, "__version__"):
        return module.__version__
    from importlib import metadata

    return metadata.version(library)


def check_version(library):
    """True when `library`'s installed version is one the private access here was verified with.

    Warns once per library otherwise (the code still runs: `tests/test_compat.py` is the real check).
    """
    version = _version(library)
    ok = any(version == v or version.startswith(v + ".") for v in TESTED[library])
    if not ok and library not in _warned:
        _warned.add(library)
        warnings.warn(
            f"tflm uses private {library} internals verified with {library} {' / '.join(TESTED[library])}; "
            f"installed {version}: run tests/test_compat.py",
            RuntimeWarning,
            stacklevel=3,
        )
    return ok


# --- keras-hub ---------------------------------------------------------------------------
def keras_hub_transformers_converter(name):
    """keras-hub's converter module for a Hugging Face architecture (`"gpt2"`, `"llama3"`).

    Its `convert_weights(backbone, loader, hf_config)` ports tensors with
    ``loader.port_weight(keras_variable, hf_weight_key, hook_fn)``.
    """
    check_version("keras_hub")
    return importlib.import_module(f"keras_hub.src.utils.transformers.convert_{name}")


def keras_hub_get_file(preset, path):
    """keras-hub's download of one file of a preset (Kaggle handle or local folder)."""
    check_version("keras_hub")
    from keras_hub.src.utils.preset_utils import get_file

    return get_file(preset, path)


def _llama_attention(self, query, key, value, attention_mask=None):
    """`LlamaAttention._compute_attention` in three passes over the scores, K/V not repeated.

    keras-hub's TensorFlow path repeats K/V to one head per query head (`ops.repeat`), scales
    the scores, casts them to float32, adds ``(1 - mask) * -1e9`` in Keras' `Softmax` layer,
    normalizes, and casts back. Here the query heads of one K/V head are one batch row of
    the products (grouped-query attention: ``(B, H_kv, G*T, h) x (B, H_kv, h, S)``, so K/V
    are read in place, whatever G = H_q / H_kv is, G = 1 included), the query is scaled
    before the product (1/sqrt(head_dim), exact in binary for head_dim = 16, 64), masked keys
    are replaced by the dtype's lowest value (`tf.where`, one pass) and TensorFlow's softmax
    runs in the compute dtype (on CPU its bfloat16 result equals the float32 softmax rounded
    to bfloat16, checked on random scores). Float32 results equal keras-hub's to rounding
    (tests/test_compat.py); at 16 x 512 tokens in bfloat16 the block runs ~1.9x faster
    (SmolLM2, `bench/profile_lm.py`).
    """
    import tensorflow as tf

    heads, kv_heads, head_dim = query.shape[2], key.shape[2], query.shape[3]
    groups = heads // kv_heads
    b, t, s = tf.shape(query)[0], tf.shape(query)[1], tf.shape(key)[1]
    query = query * tf.cast(self._inv_norm_factor, query.dtype)
    q = tf.reshape(tf.transpose(tf.reshape(query, [b, t, kv_heads, groups, head_dim]), [0, 2, 3, 1, 4]),
                   [b, kv_heads, groups * t, head_dim])
    scores = tf.matmul(q, tf.transpose(key, [0, 2, 1, 3]), transpose_b=True)  # (B, H_kv, G*T, S)
    if attention_mask is not None:
        scores = tf.reshape(scores, [b, kv_heads, groups, t, s])
        keep = tf.cast(attention_mask[:, None, None, :, :], tf.bool)
        scores = tf.reshape(tf.where(keep, scores, tf.constant(scores.dtype.min, scores.dtype)),
                            [b, kv_heads, groups * t, s])
    out = tf.matmul(tf.nn.softmax(scores, axis=-1), tf.transpose(value, [0, 2, 1, 3]))  # (B, H_kv, G*T, h)
    return tf.reshape(tf.transpose(tf.reshape(out, [b, kv_heads, groups, t, head_dim]), [0, 3, 1, 2, 4]),
                      [b, t, heads, head_dim])


_POSITIONS = contextvars.ContextVar("tflm_rope_positions", default=None)


@contextlib.contextmanager
def rope_positions(positions):
    """Inside this block, every `LlamaAttention` given `_llama_attention_call` rotates its query
    and key at ``positions`` ((B, T) int, e.g. per-text positions of a packed row) instead of
    ``0..T-1``. Used while tracing (the positions may be symbolic tensors)."""
    token = _POSITIONS.set(positions)
    try:
        yield
    finally:
        _POSITIONS.reset(token)


def _llama_attention_call(self, hidden_states, attention_mask=None, cache=None, cache_update_index=None,
                          training=None):
    """`LlamaAttention.call` without a cache: RoPE at `rope_positions` (when set), K/V not repeated.

    keras-hub's `call` passes only ``start_index`` to the rotary embedding and repeats K/V
    before `_compute_attention`; `RotaryEmbedding.call(inputs, start_index, positions=...)`
    takes per-token positions. With a cache (generation) or under vLLM, keras-hub's own
    `call` runs (its repeated K/V are a case of `_llama_attention`, G = 1).
    """
    from keras_hub.src.models.llama.llama_attention import LlamaAttention
    from keras_hub.src.vllm.context import get_vllm_context

    vllm = get_vllm_context()
    if cache is not None or cache_update_index is not None or (vllm is not None and vllm.paged_attention_func):
        return LlamaAttention.call(self, hidden_states, attention_mask=attention_mask, cache=cache,
                                   cache_update_index=cache_update_index, training=training)
    positions = _POSITIONS.get()
    rope = self.rotary_embedding_layer
    query = rope(self._query_dense(hidden_states), positions=positions)
    key = rope(self._key_dense(hidden_states), positions=positions)
    value = self._value_dense(hidden_states)
    out = self._dropout_layer(self._compute_attention(query, key, value, attention_mask), training=training)
    return self._output_dense(out)


def install_llama_attention(backbone):
    """Puts `_llama_attention` and `_llama_attention_call` on every keras-hub `LlamaAttention` of
    `backbone`; the count.

    Only on the TensorFlow backend, only where keras-hub would take its unfused
    path, and per instance (other models in the process keep keras-hub's methods).
    Subclasses that override `call` or `_compute_attention` are left alone.
    """
    check_version("keras_hub")
    from keras_hub.src.models.llama.llama_attention import LlamaAttention
    from keras_hub.src.utils.keras_utils import fused_attention_op_available

    if keras.backend.backend() != "tensorflow" or fused_attention_op_available():
        return 0
    count = 0
    for layer in backbone._flatten_layers(include_self=False, recursive=True):
        if (isinstance(layer, LlamaAttention) and type(layer)._compute_attention is LlamaAttention._compute_attention
                and type(layer).call is LlamaAttention.call):
            layer._compute_attention = types.MethodType(_llama_attention, layer)
            layer.call = types.MethodType(_llama_attention_call, layer)
            count += 1
    return count


def has_llama_attention_call(layer):
    """True when `install_llama_attention` put `_llama_attention_call` on this layer (it reads `rope_positions`)."""
    call = vars(layer).get("call")
    return getattr(call, "__func__", None) is _llama_attention_call


# --- Keras layers --------------------------------------------------------------------------
def seed_generators(model):
    """Every `keras.random.SeedGenerator` owned by `model` or its sublayers."""
    check_version("keras")
    out = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        out.extend(getattr(layer, "_seed_generators", []))
    return out


# --- Keras callbacks -----------------------------------------------------------------------
def _backup_and_restore():
    import keras

    return keras.callbacks.BackupAndRestore


class BackupAndRestoreHooks(_backup_and_restore()):
    """`keras.callbacks.BackupAndRestore` whose storage is defined by public-named hooks.

    Keras calls the private `_load_model` (at train begin) and `_save_model`
    (at the end of an epoch, `save_freq="epoch"`); they call `load_backup()`
    and `save_backup(epoch)` here. `load_backup` returns the number of
    completed epochs to resume after (0: start from scratch), which becomes
    the model's private `_initial_epoch` (reset to None for 0: a model fitted
    again, as a grid's `RunModel` is, must not inherit an earlier resume).
    """

    def __init__(self, backup_dir):
        check_version("keras")
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=False)

    def load_backup(self):
        raise NotImplementedError

    def save_backup(self, epoch):
        raise NotImplementedError

    def _load_model(self):
        epoch = self.load_backup()
        self.model._initial_epoch = int(epoch) if epoch else None

    def _save_model(self):
        self.save_backup(int(self._current_epoch))


# --- Keras TensorFlow trainer --------------------------------------------------------------
class FixedSignatureBuild:
    """Mixin for a `keras.Model` with a fixed input signature: build it from `dummy_batch()`.

    Keras 3.15's TF trainer (`_maybe_symbolic_build`) peeks the first batch
    of a distributed dataset and reduces it across replicas (MEAN over the
    whole (x, y) structure) only to learn input shapes before fit / evaluate.
    MultiWorkerMirroredStrategy's reduce does not accept a nested structure
    ("Attempt to convert a value ({'token_ids': PerReplica..."), and the mean
    of token ids is meaningless anyway.
    """

    def dummy_batch(self):
        raise NotImplementedError

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        check_version("keras")
        if iterator is not None and data_batch is None:
            data_batch, iterator = self.dummy_batch(), None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)


def in_multi_worker_mode(strategy):
    """True when `strategy` spans several workers (a MultiWorkerMirroredStrategy with a cluster)."""
    check_version("tensorflow")
    multi_worker = getattr(getattr(strategy, "extended", None), "_in_multi_worker_mode", None)
    return bool(multi_worker is not None and multi_worker())


def multi_worker_step_logs(strategy, logs):
    """A train / test step's logs in the shape Keras' multi-worker reduction accepts.

    Keras 3.15 reduces each step's scalar logs across workers with
    `strategy.reduce("MEAN", v, axis=0)` under MultiWorkerMirroredStrategy,
    which fails on scalars ("Invalid reduction dimension 0 for input with 0
    dimensions"; tensorflow/tensorflow#72388). Give them a length-1 axis
    there. Epoch logs are unaffected: Keras reads them from the metrics, whose
    variables are summed over all replicas.
    """
    if in_multi_worker_mode(strategy):
        check_version("keras")
        import keras

        return {k: keras.ops.reshape(v, (1,)) for k, v in logs.items()}
    return logs


# --- Keras optimizers ----------------------------------------------------------------------
class ClipGradientsHook:
    """Mixin for a `keras.optimizers.Optimizer`: Keras' private `_clip_gradients` calls `clip_gradients`.

    `keras_clip_gradients(grads)` is Keras' own clipping (clipnorm,
    global_clipnorm, clipvalue), for the cases the subclass does not change.
    """

    def clip_gradients(self, grads):
        return self.keras_clip_gradients(grads)

    def keras_clip_gradients(self, grads):
        return super()._clip_gradients(grads)

    def _clip_gradients(self, grads):
        check_version("keras")
        return self.clip_gradients(grads)


# --- gguf ----------------------------------------------------------------------------------
def bounded_gguf_reader(path):
    """`gguf.GGUFReader(path)` that raises ValueError on any read past the end of the file.

    Every header, metadata and tensor read of the reader goes through its private
    ``_get(offset, dtype, count)``, which slices the memory map: past the end it
    returns a shorter (or empty) array instead of failing. A metadata array claiming
    2^60 elements then loops (and grows) for ever, and a tensor claiming more bytes
    than the file holds is only noticed, if at all, when it is reshaped. Bounding
    `_get` by the file size makes every such file fail at once, before anything is
    sized by the lying count (the reader itself only memory-maps the file).
    """
    check_version("gguf")
    import numpy as np
    from gguf import GGUFReader

    class _BoundedReader(GGUFReader):
        def _get(self, offset, dtype, count=1, override_order=None):
            end = int(offset) + int(np.dtype(dtype).itemsize) * int(count)
            if int(count) < 0 or end > len(self.data):
                raise ValueError(
                    f"truncated or corrupt: a read of {int(count)} x {np.dtype(dtype).name} at byte {int(offset)} "
                    f"runs past the end of the file ({len(self.data)} bytes)"
                )
            return super()._get(offset, dtype, count, override_order)

    return _BoundedReader(path)

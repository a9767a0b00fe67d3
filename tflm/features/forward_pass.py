"""One compiled forward pass: f at chosen positions, optionally split across replicas."""

import weakref

import numpy as np
import tensorflow as tf

_SPEC = tf.TensorSpec([None, None], tf.int32)
_SHARED = weakref.WeakKeyDictionary()  # LanguageModel -> {(backbone, head) ids: ForwardPass}; see ForwardPass.shared


class ForwardPass:
    """``(token_ids, padding_mask, positions)`` (int32 arrays, (B, T), (B, T), (B, K))
    -> f at those positions, a (B, K, d) float32 numpy array; `packed` does the same for
    packed rows ``(token_ids, segment_ids, position_ids, positions)``.

    Each step is a `tf.function` traced once with a fully dynamic
    `input_signature`: batches of any shape reuse one graph (no retracing per
    bucket shape). Under a `tf.distribute` strategy with R replicas, each batch
    is padded to a multiple of R rows (copies of row 0) and replica r runs the
    r-th slice; the result equals the single-device one.

    Args:
        extractor: a `FeatureExtractor` (its `hidden_features` gives f at every position,
            its `packed_hidden_features` the same for packed rows).
        strategy: optional `tf.distribute.Strategy`.
    """

    def __init__(self, extractor, strategy=None):
        self.extractor = extractor
        self.strategy = strategy
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            raise ValueError("extraction runs under a single-machine strategy; split an extraction across "
                             "machines with num_shards / shard_index")
        self.replicas = int(strategy.num_replicas_in_sync) if strategy is not None else 1
        self._step = tf.function(self._call, input_signature=[_SPEC] * 3)
        self._packed_step = tf.function(self._packed_call, input_signature=[_SPEC] * 4)
        if self.replicas > 1:
            self._replica_step = tf.function(lambda *args: strategy.run(self._call, args=args), reduce_retracing=True)
            self._replica_packed_step = tf.function(lambda *args: strategy.run(self._packed_call, args=args),
                                                    reduce_retracing=True)

    @classmethod
    def shared(cls, lm, extractor, strategy=None):
        """The one single-device `ForwardPass` of `lm`'s backbone and head in this process.

        Every extractor of the same `LanguageModel` gets it (`hidden_features` depends on the
        backbone and head only), so a command that builds several (one per task, the
        log-partition check, ...) traces and first-executes the graph once (~5 s per extractor
        on SmolLM2 here, `bench/first_call.py`). Under a strategy: a new one each time.
        """
        if strategy is not None:
            return cls(extractor, strategy)
        passes = _SHARED.setdefault(lm, {})
        key = (id(extractor.backbone), id(extractor.head))  # alive as long as lm: it holds them
        if key not in passes:
            passes[key] = cls(extractor)
        return passes[key]

    def _call(self, token_ids, padding_mask, positions):
        h = self.extractor.hidden_features({"token_ids": token_ids, "padding_mask": padding_mask})
        return tf.cast(tf.gather(h, positions, batch_dims=1), tf.float32)

    def _packed_call(self, token_ids, segment_ids, position_ids, positions):
        h = self.extractor.packed_hidden_features(
            {"token_ids": token_ids, "segment_ids": segment_ids, "position_ids": position_ids})
        return tf.cast(tf.gather(h, positions, batch_dims=1), tf.float32)

    def __call__(self, token_ids, padding_mask, positions):
        if self.replicas == 1:
            return self._step(token_ids, padding_mask, positions).numpy()
        return self._split(self._replica_step, (token_ids, padding_mask, positions))

    def packed(self, token_ids, segment_ids, position_ids, positions):
        if self.replicas == 1:
            return self._packed_step(token_ids, segment_ids, position_ids, positions).numpy()
        return self._split(self._replica_packed_step, (token_ids, segment_ids, position_ids, positions))

    def _split(self, step, arrays):
        n = len(arrays[0])
        rows = -(-n // self.replicas)
        index = np.concatenate([np.arange(n), np.zeros(rows * self.replicas - n, dtype=int)])
        arrays = [np.asarray(a)[index] for a in arrays]
        values = self.strategy.experimental_distribute_values_from_function(
            lambda ctx: tuple(tf.constant(a[ctx.replica_id_in_sync_group * rows:(ctx.replica_id_in_sync_group + 1) * rows])
                              for a in arrays))
        result = step(*values)
        parts = self.strategy.experimental_local_results(result)
        return np.concatenate([p.numpy() for p in parts], axis=0)[:n]

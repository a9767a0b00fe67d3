"""A trainable causal LM (Keras model) whose objective is a loss layer."""

import warnings

import keras
import tensorflow as tf
from keras import ops

from tflm.lm.cross_entropy_loss import CrossEntropyLoss
from tflm.lm.quad_loss import QuadLoss, gram_matrix
from tflm.models.output_embeddings import output_embeddings, word_logits
from tflm.models.serialization import deserialize_nested, serialize_backbone, serialize_optional
from tflm.models.untied_head import UntiedHead

OBJECTIVES = ("xent", "quad")


@keras.saving.register_keras_serializable(package="tflm")
class CausalLM(keras.Model):
    """Backbone -> (optional untied head) -> features f, trained by `objective`.

    Inputs are ``{"token_ids", "padding_mask"}`` (B, T); `fit` takes the next
    token ids as `y` and a (B, T) mask of real targets as `sample_weight`.
    Calling the model returns f (B, T, d). The loss is computed by a loss
    layer on (f, Phi): `CrossEntropyLoss` or `QuadLoss` (Gram form).

    Args:
        backbone: a keras-hub backbone (e.g. `GPT2Backbone`).
        objective: "xent" or "quad".
        head: optional `UntiedHead` (f_lin + untied Phi); None means tied
            Phi = token embedding (standard GPT-2).

    Quad with a frozen Phi trains best with a whitened head
    (`UntiedHead(whiten=True)`, the `pretrain` default there): the head
    outputs f = G^-1/2 g, and the Quad loss computed on f, -f.phi_w +
    1/2 f^T G f, is exactly -g.(G^-1/2 phi_w) + 1/2 ||g||^2 in the network's
    output g, whose Hessian is the identity instead of G. `fit` (re)computes
    G and G^-1/2 of the frozen Phi before training.

    Metrics: `softmax_xent` (the softmax cross-entropy of the logits f.Phi^T,
    so perplexity = exp(softmax_xent)) is tracked for every objective; for
    Quad it is computed in evaluation only (its V-dim cost is what Quad's
    training avoids).
    """

    def __init__(self, backbone, objective="xent", head=None, **kwargs):
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; choose one of {OBJECTIVES}")
        super().__init__(**kwargs)
        # === Layers ===
        self.backbone = backbone
        self.head = head
        self.xent_loss = CrossEntropyLoss(name="xent_loss")
        self.quad_loss = QuadLoss(name="quad_loss")
        self.softmax_xent = keras.metrics.Mean(name="softmax_xent")
        # === Config ===
        self.objective = objective
        self._frozen_gram = None

    def build(self, input_shape=None):
        if self.head is not None and not self.head.built:
            self.head.build()
        if self.objective == "quad" and not self.phi_trainable:
            d = self.head.hidden_dim if self.head is not None else self.backbone.hidden_dim
            self._frozen_gram = self.add_weight(
                shape=(d, d), initializer="zeros", trainable=False, name="frozen_gram"
            )
        self.built = True

    @property
    def phi(self):
        """Phi as (V, d): row w is phi_w (an untied backbone's reverse embedding when it has one)."""
        return output_embeddings(self.backbone, self.head)

    @property
    def phi_trainable(self):
        return self.head.trainable_phi if self.head is not None else True

    def refresh_gram(self):
        """Recompute the constants of a frozen Phi: its Gram matrix and the head's G^-1/2."""
        if not self.built:
            self.build()
        if self.head is not None and not self.phi_trainable:
            self.head.refresh_whitening()
        if self._frozen_gram is not None:
            self._frozen_gram.assign(gram_matrix(ops.convert_to_tensor(self.phi)))

    def call(self, inputs, training=False):
        h = self.backbone(
            {"token_ids": inputs["token_ids"], "padding_mask": inputs["padding_mask"]},
            training=training,
        )
        return self.head(h) if self.head is not None else h

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        mask = sample_weight if sample_weight is not None else x["padding_mask"]
        phi = ops.convert_to_tensor(self.phi)
        n_local = ops.sum(ops.cast(mask, "float32"))
        if self.objective == "xent":
            loss = self.xent_loss(y_pred, phi, y, mask)
            self.softmax_xent.update_state(loss, sample_weight=n_local)
        else:
            # Quad's objective is a small difference of two terms: float32 even
            # under a mixed-precision body (f is (B, T, d), so this is cheap).
            gram = None if self._frozen_gram is None else self._frozen_gram
            loss = self.quad_loss(ops.cast(y_pred, "float32"), phi, y, mask, gram=gram)
            if not training:
                self.softmax_xent.update_state(self.xent_loss(y_pred, phi, y, mask), sample_weight=n_local)
        return self._replica_share(loss, n_local)

    def train_step(self, data):
        logs = super().train_step(data)
        if self.objective == "quad":
            logs.pop("softmax_xent", None)  # evaluation-only for Quad: not a 0 in the progress bar
        return logs

    @staticmethod
    def _replica_share(loss, n_local):
        """This replica's share of the global masked mean.

        The loss layers return the mean over this replica's real positions.
        Keras' trainer sums per-replica losses (its built-in losses are
        pre-scaled by 1/num_replicas), so each replica returns
        ``sum_of_its_losses / global_number_of_real_positions``: the
        gradients then sum to those of the global masked mean even when the
        replicas' shards hold different numbers of real (unpadded) targets.
        With one replica this is the loss itself.
        """
        num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
        ctx = tf.distribute.get_replica_context()
        if num_replicas == 1 or ctx is None:
            return loss
        n_local = tf.stop_gradient(tf.cast(n_local, loss.dtype))
        n_global = ctx.all_reduce(tf.distribute.ReduceOp.SUM, n_local)
        return loss * n_local / tf.maximum(n_global, 1.0)

    def compile(self, *args, jit_compile="auto", **kwargs):
        """`keras.Model.compile`; XLA is turned off for several replicas on CPUs.

        TF's XLA cannot run a replica's step when MirroredStrategy puts the
        replicas' variables on different logical CPU devices ("Trying to
        access resource ... located in device CPU:1 from device CPU:0"), so
        `jit_compile=True` falls back to graph mode there (with a warning).
        """
        strategy = self.distribute_strategy
        devices = strategy.extended.worker_devices if strategy.num_replicas_in_sync > 1 else ()
        if jit_compile is True and len(devices) > 1 and all("CPU" in d.upper() for d in devices):
            warnings.warn(
                f"jit_compile=True is not supported with {len(devices)} replicas on CPU "
                "devices (TF XLA limitation); compiling without XLA"
            )
            jit_compile = False
        super().compile(*args, jit_compile=jit_compile, **kwargs)

    def fit(self, *args, **kwargs):
        self.refresh_gram()
        return super().fit(*args, **kwargs)

    def logits(self, token_ids, padding_mask):
        f = self({"token_ids": token_ids, "padding_mask": padding_mask})
        return word_logits(f, ops.convert_to_tensor(self.phi))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "backbone": serialize_backbone(self.backbone),
                "objective": self.objective,
                "head": serialize_optional(self.head),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**deserialize_nested(config, ("backbone", "head")))


def make_untied_head(vocabulary_size, hidden_dim, trainable_phi=True, phi=None, name="untied_head", **options):
    """A built float32 `UntiedHead` (`options`: its other arguments), Phi optionally set from a (V, d) matrix.

    The head is float32 whatever the global dtype policy: f, and the
    whitening map G^-1/2 in particular, keep full precision under a
    mixed-precision body.
    """
    head = UntiedHead(vocabulary_size, hidden_dim, trainable_phi=trainable_phi, name=name, dtype="float32", **options)
    head.build()
    if phi is not None:
        head.set_phi(phi)
    return head

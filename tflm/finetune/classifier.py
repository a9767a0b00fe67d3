"""`Classifier`: a causal LM body with a linear head on the last real token."""

import keras
import numpy as np

from tflm._compat import FixedSignatureBuild, multi_worker_step_logs
from tflm.features.last_token_pooling import LastTokenPooling
from tflm.models.serialization import deserialize_nested, serialize_backbone, serialize_optional


@keras.saving.register_keras_serializable(package="tflm")
class Classifier(FixedSignatureBuild, keras.Model):
    """Full fine-tuning model of the paper: body -> f at the last real token -> Dropout -> Dense.

    Inputs ``{"token_ids", "padding_mask"}`` (int32, (B, T), any padding
    side); outputs (B, num_classes) logits, or probabilities with
    ``output_probabilities=True``. The pooled position is
    ``max{t : padding_mask[t] = 1}`` (`LastTokenPooling`), never a pad-token
    search.

    Args:
        backbone: any keras-hub backbone `tflm.load_lm` returns (GPT-2,
            Llama, ...) mapping ``{"token_ids", "padding_mask"}`` to final
            hidden states.
        num_classes: k.
        f_lin: optional `keras.layers.Dense` (d -> d), the untied head's
            affine `f_lin` (`UntiedHead.f_lin`), so f is what the LM itself
            uses as features. The untied Phi is not part of the classifier.
        dropout: dropout before the linear head (0.1 in the reference code).
        output_probabilities: softmax the logits.

    Serializes like keras-hub tasks (`get_config` holds the serialized
    backbone), so ``model.save("x.keras")`` + ``keras.models.load_model``
    round-trip.
    """

    def __init__(
        self,
        backbone,
        num_classes,
        f_lin=None,
        dropout=0.1,
        output_probabilities=False,
        **kwargs,
    ):
        # === Layers ===
        self.backbone = backbone
        self.f_lin = f_lin
        self.pooling = LastTokenPooling(name="last_token")
        self.head_dropout = keras.layers.Dropout(float(dropout), name="head_dropout")
        self.logits_layer = keras.layers.Dense(int(num_classes), name="logits")
        self.softmax = keras.layers.Softmax(name="probabilities") if output_probabilities else None

        # === Functional model ===
        inputs = {
            "token_ids": keras.Input(shape=(None,), dtype="int32", name="token_ids"),
            "padding_mask": keras.Input(shape=(None,), dtype="int32", name="padding_mask"),
        }
        h = backbone(inputs)
        if f_lin is not None:
            h = f_lin(h)
        pooled = self.pooling(h, inputs["padding_mask"])
        outputs = self.logits_layer(self.head_dropout(pooled))
        if self.softmax is not None:
            outputs = self.softmax(outputs)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.num_classes = int(num_classes)
        self.dropout = float(dropout)
        self.output_probabilities = bool(output_probabilities)

    def dummy_batch(self):
        # The input signature is fixed: Keras learns it from this one-token
        # batch instead of reducing a real batch across replicas (`FixedSignatureBuild`).
        return (
            {"token_ids": np.zeros((1, 1), "int32"), "padding_mask": np.ones((1, 1), "int32")},
            np.zeros((1,), "int32"),
        )

    def train_step(self, data):
        return multi_worker_step_logs(self.distribute_strategy, super().train_step(data))

    def test_step(self, data):
        return multi_worker_step_logs(self.distribute_strategy, super().test_step(data))

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": serialize_backbone(self.backbone),
            "num_classes": self.num_classes,
            "f_lin": serialize_optional(self.f_lin),
            "dropout": self.dropout,
            "output_probabilities": self.output_probabilities,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**deserialize_nested(config, ("backbone", "f_lin")))


def lm_parts(lm):
    """(backbone, f_lin or None) of a `LanguageModel`: what a `Classifier` uses."""
    f_lin = None
    if lm.head is not None and getattr(lm.head, "use_f_lin", False):
        f_lin = lm.head.f_lin
    return lm.backbone, f_lin


class LMSnapshot:
    """The weights of an LM body (+ f_lin) in host memory, to build fresh copies.

    Every fine-tuning run starts from the same pretrained weights; building
    a copy with `build()` inside a `strategy.scope()` creates the variables
    on that strategy's devices (a `tf.distribute` requirement) without
    reading the checkpoint again.
    """

    def __init__(self, lm):
        backbone, f_lin = lm_parts(lm)
        self.backbone_config = serialize_backbone(backbone)
        self.backbone_weights = [np.array(w) for w in backbone.get_weights()]
        self.hidden_dim = int(backbone.hidden_dim)
        self.f_lin_config = None if f_lin is None else keras.saving.serialize_keras_object(f_lin)
        self.f_lin_weights = None if f_lin is None else [np.array(w) for w in f_lin.get_weights()]

    def build(self, dtype=None):
        """A new (backbone, f_lin) with the snapshot's weights; `dtype`: another dtype policy for the body."""
        config = self.backbone_config
        if dtype is not None:
            from tflm.models.language_model import dtype_policy

            config = {**config, "config": {**config["config"], "dtype": dtype_policy(dtype)}}
        backbone = keras.saving.deserialize_keras_object(config)
        backbone.set_weights(self.backbone_weights)
        f_lin = None
        if self.f_lin_config is not None:
            f_lin = keras.saving.deserialize_keras_object(self.f_lin_config)
            if not f_lin.built:
                f_lin.build((None, None, self.hidden_dim))
            f_lin.set_weights(self.f_lin_weights)
        return backbone, f_lin

    def classifier(self, num_classes, dropout=0.1, output_probabilities=False, name="classifier", dtype=None):
        backbone, f_lin = self.build(dtype)
        return Classifier(
            backbone, num_classes, f_lin=f_lin, dropout=dropout,
            output_probabilities=output_probabilities, name=name,
        )

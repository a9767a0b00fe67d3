"""The paper's sentence features as one Keras model."""

import keras
from keras import ops

from tflm.features.conditional_mean import ConditionalMean
from tflm.features.last_token_pooling import LastTokenPooling
from tflm.features.names import WORD_FEATURES, check_feature_names
from tflm.features.random_projection import RandomProjection
from tflm.features.word_scores import WordScores
from tflm.models.packed_forward import packed_hidden_states
from tflm.models.output_embeddings import next_word_distribution, output_embeddings
from tflm.models.serialization import deserialize_nested, serialize_backbone, serialize_optional


@keras.saving.register_keras_serializable(package="tflm")
class FeatureExtractor(keras.Model):
    """Maps ``{"token_ids", "padding_mask"}`` to a dict of sentence features.

    - ``f``: the final hidden state at the last real token (after `f_lin`
      for untied models);
    - ``phi_p``: Phi p_f(s) = softmax(f Phi^T) Phi;
    - ``p``: the full next-word distribution p_f(s) (V dims);
    - ``subset`` / ``class`` / ``posneg``: scores of chosen word ids;
    - ``proj``: A p_f(s) with A a seeded (d, V) matrix with orthonormal rows.

    Every feature but f is a function of f and Phi (`derive`), so pipelines
    can run the LM once, cache f, and stream the rest batch by batch.

    Args:
        backbone: keras-hub backbone returning final hidden states.
        head: optional `UntiedHead`; Phi is then the head's matrix.
        features: names to output.
        word_ids: dict from word-feature name to token id list.
        word_mode: "logits" (paper), "probs" or "logprobs".
        proj_seed: seed of the random projection.
    """

    def __init__(self, backbone, head=None, features=("f", "phi_p"), word_ids=None,
                 word_mode="logits", proj_seed=0, **kwargs):
        super().__init__(**kwargs)
        features = check_feature_names(features)
        word_ids = dict(word_ids or {})
        for name in features:
            if name in WORD_FEATURES and not word_ids.get(name):
                raise ValueError(f"feature {name!r} needs a word list (word_ids[{name!r}])")
        # === Layers ===
        self.backbone = backbone
        self.head = head
        self.pooling = LastTokenPooling(name="last_token")
        self.conditional_mean = ConditionalMean(name="conditional_mean")
        self.word_scores = {
            n: WordScores(word_ids[n], mode=word_mode, name=f"{n}_scores")
            for n in WORD_FEATURES if n in features
        }
        self.projection = (
            RandomProjection(backbone.hidden_dim, backbone.vocabulary_size, seed=proj_seed, name="projection")
            if "proj" in features else None
        )
        # === Config ===
        self.features = features
        self.word_ids = {k: [int(i) for i in v] for k, v in word_ids.items()}
        self.word_mode = word_mode
        self.proj_seed = proj_seed

    @property
    def phi(self):
        return output_embeddings(self.backbone, self.head)

    def hidden_features(self, inputs):
        """f at every position (B, T, d), in the backbone's compute dtype."""
        h = self.backbone({"token_ids": inputs["token_ids"], "padding_mask": inputs["padding_mask"]})
        return self.head(h) if self.head is not None else h

    def packed_hidden_features(self, inputs):
        """f at every position (B, T, d) of packed rows: ``{"token_ids", "segment_ids",
        "position_ids"}`` (see `tflm.models.packed_forward`); each text's values equal its own
        unpacked ones."""
        h = packed_hidden_states(self.backbone, inputs["token_ids"], inputs["segment_ids"], inputs["position_ids"])
        return self.head(h) if self.head is not None else h

    def sentence_f(self, inputs):
        return self.pooling(self.hidden_features(inputs), inputs["padding_mask"])

    def derive(self, f, names=None):
        """The non-f features from f (B, d)."""
        phi = ops.convert_to_tensor(self.phi)
        out = {}
        for name in names or self.features:
            if name == "f":
                out[name] = f
            elif name == "phi_p":
                out[name] = self.conditional_mean(f, phi)
            elif name == "p":
                out[name] = next_word_distribution(f, phi)
            elif name in WORD_FEATURES:
                out[name] = self.word_scores[name](f, phi)
            elif name == "proj":
                out[name] = self.projection(f, phi)
        return out

    def call(self, inputs):
        return self.derive(self.sentence_f(inputs))

    def get_config(self):
        config = super().get_config()
        config.update({
            "backbone": serialize_backbone(self.backbone),
            "head": serialize_optional(self.head),
            "features": self.features,
            "word_ids": self.word_ids,
            "word_mode": self.word_mode,
            "proj_seed": self.proj_seed,
        })
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**deserialize_nested(config, ("backbone", "head")))

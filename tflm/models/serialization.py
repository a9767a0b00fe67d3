"""Serialization helpers for Keras models that nest a keras-hub backbone."""

import keras


def serialize_backbone(backbone):
    """`keras.saving.serialize_keras_object(backbone)`, plus `tie_word_embeddings`.

    keras-hub 0.32's `Llama3Backbone.get_config()` omits
    `tie_word_embeddings`, so a tied Llama would deserialize untied (one more
    weight); record it explicitly (as `save_preset_dir` does).
    """
    config = keras.saving.serialize_keras_object(backbone)
    if hasattr(backbone, "tie_word_embeddings"):
        config["config"]["tie_word_embeddings"] = bool(backbone.tie_word_embeddings)
    return config


def serialize_optional(layer):
    return None if layer is None else keras.saving.serialize_keras_object(layer)


def deserialize_nested(config, keys):
    """A copy of `config` with the serialized layers under `keys` deserialized (None stays None)."""
    config = dict(config)
    for key in keys:
        if config.get(key) is not None:
            config[key] = keras.saving.deserialize_keras_object(config[key])
    return config

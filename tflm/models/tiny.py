"""Tiny random models for tests (`tiny-gpt2`, `tiny-gpt2-untied`, `tiny-llama`, `tiny-llama-untied`)."""

import keras
import keras_hub

from tflm.models.language_model import LanguageModel
from tflm.models.untied_head import UntiedHead
from tflm.tokenization import gpt2_tokenizer

TINY_SPECS = ("tiny-gpt2", "tiny-gpt2-untied", "tiny-llama", "tiny-llama-untied")


def gpt2_config(name):
    """Named GPT-2 architecture sizes (also used by `tflm pretrain --config`)."""
    configs = {
        "tiny": dict(num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=128),
        "small": dict(num_layers=4, num_heads=4, hidden_dim=128, intermediate_dim=512, max_sequence_length=256),
        "gpt2_base": dict(num_layers=12, num_heads=12, hidden_dim=768, intermediate_dim=3072, max_sequence_length=1024),
        "gpt2_medium": dict(num_layers=24, num_heads=16, hidden_dim=1024, intermediate_dim=4096, max_sequence_length=1024),
    }
    if name not in configs:
        raise ValueError(f"unknown config {name!r}; choose one of {sorted(configs)}")
    return dict(configs[name])


def load_tiny(spec, seed=0):
    """A tiny, randomly initialised (seeded) model with the real GPT-2 tokenizer.

    `tiny-gpt2-untied` has tflm's `UntiedHead`; `tiny-llama-untied` is a
    keras-hub Llama with ``tie_word_embeddings=False`` (its own output matrix).
    """
    if spec not in TINY_SPECS:
        raise ValueError(f"unknown tiny model {spec!r}; choose one of {TINY_SPECS}")
    keras.utils.set_random_seed(seed)
    tokenizer = gpt2_tokenizer()
    vocab = tokenizer.vocabulary_size
    head = None
    if spec.startswith("tiny-gpt2"):
        backbone = keras_hub.models.GPT2Backbone(
            vocabulary_size=vocab, dropout=0.0, **gpt2_config("tiny"), name="gpt2_backbone"
        )
        if spec == "tiny-gpt2-untied":
            head = UntiedHead(vocab, backbone.hidden_dim, name="untied_head")
            head.build()
    else:
        backbone = keras_hub.models.Llama3Backbone(
            vocabulary_size=vocab,
            num_layers=2,
            num_query_heads=4,
            num_key_value_heads=2,
            hidden_dim=16,
            intermediate_dim=40,
            rope_max_wavelength=100000,
            layer_norm_epsilon=1e-5,
            tie_word_embeddings=spec == "tiny-llama",  # untied: a separate reverse_embeddings, as HF Llama
            name="llama3_backbone",
        )
    return LanguageModel(backbone, tokenizer, head=head, name=spec, source="tiny")

"""`output_embeddings`: Phi of tied, untied-head and untied keras-hub (reverse-embedding) models."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tflm.features import FeatureExtractor  # noqa: E402
from tflm.lm.causal_lm import CausalLM  # noqa: E402
from tflm.lm.pretrain import pretrain  # noqa: E402
from tflm.models import load_lm  # noqa: E402
from tflm.models.output_embeddings import next_word_distribution, output_embeddings  # noqa: E402

TEXT = ("This movie was a delight from start to finish, with a clever script and warm performances. "
        "I could not stop laughing at the supporting cast, although the ending dragged a little.\n")


def np_(x):
    return keras.ops.convert_to_numpy(x)


def test_phi_of_each_kind_of_model():
    tied = load_lm("tiny-gpt2")
    assert tied.tied and output_embeddings(tied.backbone) is tied.backbone.token_embedding.embeddings
    head = load_lm("tiny-gpt2-untied")
    assert output_embeddings(head.backbone, head.head) is head.head.phi
    llama = load_lm("tiny-llama-untied")
    emb = llama.backbone.token_embedding
    assert not llama.tied and not emb.tie_weights
    phi = np_(llama.output_embeddings())
    assert phi.shape == (llama.vocabulary_size, llama.hidden_dim)
    np.testing.assert_array_equal(phi, np_(emb.reverse_embeddings).T)
    assert not np.allclose(phi, np_(emb.embeddings))
    np.testing.assert_array_equal(np_(CausalLM(llama.backbone).phi), phi)


def test_next_word_distribution_and_p_feature_use_the_reverse_embedding():
    llama = load_lm("tiny-llama-untied")
    x = {"token_ids": np.array([[10, 20, 30, 0]], "int32"), "padding_mask": np.array([[1, 1, 1, 0]], "int32")}
    out = FeatureExtractor(llama.backbone, features=["f", "p"])(x)
    f = np_(out["f"]).astype(np.float64)
    logits = f @ np_(llama.backbone.token_embedding.reverse_embeddings).astype(np.float64)
    ref = np.exp(logits - logits.max(-1, keepdims=True))
    ref /= ref.sum(-1, keepdims=True)
    np.testing.assert_allclose(np_(out["p"]), ref, atol=1e-6)
    np.testing.assert_allclose(np_(next_word_distribution(out["f"], llama.output_embeddings())), ref, atol=1e-6)
    # the full-sequence logits agree with the pooled feature at the last real token
    np.testing.assert_allclose(np_(llama.logits(x["token_ids"], x["padding_mask"]))[0, 2], logits[0], rtol=1e-4, atol=1e-4)


class _Keep(keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        self.trained = self.model


@pytest.mark.slow
def test_pretrain_init_untied_llama_trains_and_saves_the_reverse_embedding(tmp_path):
    """`tflm pretrain --init <untied Llama>`: the loss reads the output matrix, and the checkpoint keeps it."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT * 8, encoding="utf-8")
    before = load_lm("tiny-llama-untied")
    phi0 = np_(before.output_embeddings())
    keep = _Keep()
    pretrain(objective="xent", corpus=str(corpus), out_dir=str(tmp_path / "run"), init="tiny-llama-untied", steps=2, checkpoint_every=2,
             batch_size=4, seq_len=16, lr=1e-2, warmup_steps=1, jit_compile=False, verbose=0, callbacks=[keep])
    trained = keep.trained
    emb = trained.backbone.token_embedding
    phi = np_(trained.phi)
    np.testing.assert_array_equal(phi, np_(emb.reverse_embeddings).T)
    assert np.abs(phi - phi0).max() > 1e-4  # the output matrix got gradients
    reloaded = load_lm(str(tmp_path / "run" / "model"))
    assert not reloaded.tied
    np.testing.assert_allclose(np_(reloaded.output_embeddings()), phi, atol=1e-6)
    x = np.array([[5, 6, 7, 8]], "int32"), np.ones((1, 4), "int32")
    np.testing.assert_allclose(np_(reloaded.logits(*x)), np_(trained.logits(*x)), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("spec", ["tiny-gpt2", "tiny-llama-untied"])
def test_tiny_models_load(spec):
    lm = load_lm(spec)
    assert lm.output_embeddings().shape == (lm.vocabulary_size, lm.hidden_dim)

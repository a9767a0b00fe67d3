"""The one LM handle every tflm path uses (features, probes, fine-tuning, training)."""

import hashlib

import keras
import numpy as np
from keras import ops


class LanguageModel:
    """A causal LM as the paper sees it: features f(s) and output embeddings Phi.

    Args:
        backbone: a keras-hub backbone (`GPT2Backbone`, `Llama3Backbone`, ...)
            mapping `{"token_ids", "padding_mask"}` to final hidden states
            (after the final norm).
        tokenizer: a `tflm.tokenization.Tokenizer` equal to the model's
            reference tokenizer.
        head: optional `UntiedHead` (f_lin + untied Phi). When given, f is
            the head's output and Phi the head's matrix.
        name: a short identity (the spec it was loaded from).
        source: how it was loaded ("tiny", "keras-hub-preset", "hf", "gguf", ...).
        max_sequence_length: the context length to truncate inputs to.
        metadata: free-form dict (model card, conversion notes).
    """

    def __init__(
        self,
        backbone,
        tokenizer,
        head=None,
        name=None,
        source=None,
        max_sequence_length=None,
        metadata=None,
    ):
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.head = head
        self.name = name or backbone.name
        self.source = source
        self.max_sequence_length = int(
            max_sequence_length
            or getattr(backbone, "max_sequence_length", None)
            or 2048
        )
        self.metadata = dict(metadata or {})
        emb_vocab = self.vocabulary_size
        if tokenizer is not None and tokenizer.vocabulary_size > emb_vocab:
            raise ValueError(
                f"{self.name}: tokenizer has {tokenizer.vocabulary_size} tokens but "
                f"the embedding matrix has only {emb_vocab} rows"
            )
        self._fingerprint = None

    # --- shape facts ------------------------------------------------------
    @property
    def architecture(self):
        return type(self.backbone).__name__

    @property
    def hidden_dim(self):
        """d: the dimension of f and of Phi's rows (the head's, when it maps the body to another width)."""
        return int(self.head.hidden_dim if self.head is not None else self.backbone.hidden_dim)

    @property
    def vocabulary_size(self):
        return int(self.backbone.vocabulary_size)

    @property
    def tied(self):
        """True when Phi is the input token embedding (standard GPT-2)."""
        if self.head is not None:
            return False
        return bool(getattr(self.backbone, "tie_word_embeddings", True))

    @property
    def num_parameters(self):
        n = self.backbone.count_params()
        if self.head is not None:
            n += self.head.count_params()
        return int(n)

    # --- the paper's quantities ------------------------------------------
    def output_embeddings(self):
        """Phi as a (V, d) variable: row w is phi_w."""
        if self.head is not None:
            return self.head.phi
        emb = self.backbone.token_embedding
        if self.tied:
            return emb.embeddings
        return ops.transpose(emb.reverse_embeddings)

    def hidden_states(self, token_ids, padding_mask, training=False):
        return self.backbone(
            {"token_ids": token_ids, "padding_mask": padding_mask}, training=training
        )

    def features(self, token_ids, padding_mask, training=False):
        """f at every position, shape (B, T, d) (after f_lin for untied heads)."""
        h = self.hidden_states(token_ids, padding_mask, training=training)
        return self.head(h) if self.head is not None else h

    def logits(self, token_ids, padding_mask):
        f = self.features(token_ids, padding_mask)
        return ops.einsum("btd,vd->btv", f, ops.convert_to_tensor(self.output_embeddings()))

    # --- identity ------------------------------------------------------
    def weights(self):
        w = list(self.backbone.weights)
        if self.head is not None:
            w += list(self.head.weights)
        return w

    def fingerprint(self):
        """sha256 over every weight (names, shapes, values): the cache identity."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(self.architecture.encode())
            for v in self.weights():
                a = np.ascontiguousarray(keras.ops.convert_to_numpy(v))
                h.update(f"{v.path}:{a.shape}:{a.dtype}".encode())
                h.update(a.tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def info(self):
        """A dict summary (what `tflm info` prints)."""
        return {
            "name": self.name,
            "source": self.source,
            "architecture": self.architecture,
            "num_layers": int(self.backbone.num_layers),
            "hidden_dim (d)": self.hidden_dim,
            "vocabulary_size (V)": self.vocabulary_size,
            "max_sequence_length": self.max_sequence_length,
            "output_head": (
                "tied (Phi = token embedding)"
                if self.tied
                else ("untied Phi" + (" + affine f_lin" if self.head is not None and self.head.use_f_lin else ""))
            ),
            "num_parameters": self.num_parameters,
            "tokenizer": repr(self.tokenizer),
            **{k: v for k, v in self.metadata.items() if isinstance(v, (str, int, float))},
        }

    def __repr__(self):
        return (
            f"LanguageModel({self.name!r}, {self.architecture}, d={self.hidden_dim}, "
            f"V={self.vocabulary_size}, tied={self.tied})"
        )

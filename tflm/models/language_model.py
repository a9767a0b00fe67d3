"""The one LM handle every tflm path uses (features, probes, fine-tuning, training)."""

import hashlib

import keras
import numpy as np
from keras import ops

from tflm import _compat
from tflm.models.output_embeddings import is_tied, output_embeddings, word_logits
from tflm.models.serialization import serialize_backbone

DTYPES = ("float32", "bfloat16", "float16")
DEFAULT_DTYPE = "float32"  # the CLI's default for feature extraction (see notes/h-speed.md)


def dtype_policy(dtype):
    """The Keras dtype policy name for a compute dtype: "float32", "mixed_bfloat16" or "mixed_float16".

    Reduced precision always uses the mixed policy (float32 weights, `dtype`
    compute), for training and for feature extraction alike: Phi stays
    float32, so phi_p and the word features are computed from the exact
    output embeddings (with a pure bfloat16 policy Phi is rounded too, and on
    SmolLM2 SST-2 the phi_p probe moved by 0.4 points; see notes/h-speed.md).
    """
    check_dtype(dtype)
    return "float32" if dtype == "float32" else f"mixed_{dtype}"


def check_dtype(dtype):
    """Raise a clear ValueError when `dtype` is unknown or unsupported on this machine.

    float16 needs a GPU: TensorFlow's CPU kernels have no fast float16 matmul
    (and several ops none at all); bfloat16 is the CPU's reduced precision.
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {DTYPES}")
    if dtype == "float16" and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if not tf.config.list_logical_devices("GPU"):
            raise ValueError("dtype 'float16' needs a GPU (TensorFlow's CPU float16 kernels are missing or "
                             "emulated); use 'bfloat16' or 'float32' on CPU")
    return dtype


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
        _compat.install_llama_attention(backbone)  # same math, fewer passes over the attention scores
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

    # --- compute dtype ---------------------------------------------------
    @property
    def dtype(self):
        """The compute dtype of the backbone ("float32", "bfloat16", "float16")."""
        return keras.backend.standardize_dtype(self.backbone.dtype_policy.compute_dtype)

    def with_dtype(self, dtype):
        """This model rebuilt with the Keras dtype policy of `dtype` (`dtype_policy`; weights copied).

        Returns self when the policy is already `dtype`. The copy keeps the
        weights fingerprint of this model (the float32 weights it came from),
        ties (`tie_word_embeddings`, which keras-hub 0.32 drops from Llama
        configs) and the head; its identity differs by `dtype` only.
        """
        policy = dtype_policy(dtype)
        if self.backbone.dtype_policy.name == policy:
            return self
        config = serialize_backbone(self.backbone)
        config["config"]["dtype"] = policy
        backbone = keras.saving.deserialize_keras_object(config)
        backbone.set_weights(self.backbone.get_weights())
        head = None
        if self.head is not None:
            head_config = keras.saving.serialize_keras_object(self.head)
            head_config["config"]["dtype"] = policy
            head = keras.saving.deserialize_keras_object(head_config)
            if not head.built:
                head.build()
            head.set_weights(self.head.get_weights())
        lm = LanguageModel(backbone, self.tokenizer, head=head, name=self.name, source=self.source,
                           max_sequence_length=self.max_sequence_length, metadata=self.metadata)
        lm._fingerprint = self.fingerprint()
        return lm

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
        return is_tied(self.backbone, self.head)

    @property
    def num_parameters(self):
        n = self.backbone.count_params()
        if self.head is not None:
            n += self.head.count_params()
        return int(n)

    # --- the paper's quantities ------------------------------------------
    def output_embeddings(self):
        """Phi as a (V, d) variable: row w is phi_w."""
        return output_embeddings(self.backbone, self.head)

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
        return word_logits(f, ops.convert_to_tensor(self.output_embeddings()))

    # --- identity ------------------------------------------------------
    def weights(self):
        w = list(self.backbone.weights)
        if self.head is not None:
            w += list(self.head.weights)
        return w

    def fingerprint(self):
        """sha256 over every weight (names, shapes, values): the cache identity.

        A model rebuilt by `with_dtype` keeps its source's fingerprint; the
        compute dtype is a separate part of every identity (`self.dtype`).
        """
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
            "dtype": self.dtype,
            "tokenizer": repr(self.tokenizer),
            **{k: v for k, v in self.metadata.items() if isinstance(v, (str, int, float))},
        }

    def __repr__(self):
        return (
            f"LanguageModel({self.name!r}, {self.architecture}, d={self.hidden_dim}, "
            f"V={self.vocabulary_size}, tied={self.tied}, dtype={self.dtype})"
        )

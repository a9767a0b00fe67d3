"""The output embeddings Phi of a causal LM and the next-word distribution p_f = softmax(f Phi^T).

Every tflm path reads Phi through `output_embeddings` and computes logits /
p_f through `word_logits` / `next_word_distribution`.
"""

from keras import ops


def output_embeddings(backbone, head=None):
    """Phi as (V, d), row w is phi_w: the head's matrix, else the backbone's output embedding.

    A keras-hub backbone's `ReversibleEmbedding` is tied (Phi = the input
    token embedding, GPT-2) or untied (``tie_weights=False``: Phi is the
    transpose of its separate ``reverse_embeddings`` (d, V) variable, e.g. a
    Llama / Mistral checkpoint with ``tie_word_embeddings: false``).
    """
    if head is not None:
        return head.phi
    embedding = backbone.token_embedding
    if getattr(embedding, "tie_weights", True):
        return embedding.embeddings
    return ops.transpose(embedding.reverse_embeddings)


def is_tied(backbone, head=None):
    """True when Phi is the input token embedding."""
    return head is None and bool(getattr(backbone.token_embedding, "tie_weights", True))


def word_logits(f, phi):
    """``f Phi^T``: f (..., d), phi (V, d) -> (..., V), in f's dtype."""
    return ops.matmul(f, ops.transpose(ops.cast(phi, f.dtype)))


def next_word_distribution(f, phi):
    """p_f = ``softmax(f Phi^T)`` over the vocabulary: (..., d) -> (..., V)."""
    return ops.softmax(word_logits(f, phi), axis=-1)

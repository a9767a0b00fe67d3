"""A backbone's forward pass over packed rows: several texts per row, none attending to another."""

from keras import ops

from tflm import _compat


def supports_packing(backbone):
    """True for the backbones `packed_hidden_states` runs: keras-hub GPT-2 (learned positions) and
    Llama (RoPE) whose attention layers all carry `_compat`'s per-token-position call."""
    import keras_hub

    if isinstance(backbone, keras_hub.models.GPT2Backbone):
        return True
    if type(backbone) in (keras_hub.models.LlamaBackbone, keras_hub.models.Llama3Backbone):
        attention = [layer._self_attention_layer for layer in backbone.transformer_layers]
        return bool(attention) and all(_compat.has_llama_attention_call(a) for a in attention)
    return False


def block_causal_mask(segment_ids):
    """(B, T, T) int32: token i sees token j when both belong to the same text and j <= i.

    `segment_ids` (B, T) numbers the texts of each row (padding is one more segment; its
    outputs are never read).
    """
    t = ops.shape(segment_ids)[1]
    causal = ops.arange(t)[None, :] <= ops.arange(t)[:, None]
    same = ops.equal(segment_ids[:, :, None], segment_ids[:, None, :])
    return ops.cast(ops.logical_and(same, causal[None]), "int32")


def packed_hidden_states(backbone, token_ids, segment_ids, position_ids):
    """Final hidden states (B, T, d) of packed rows.

    Each text of a row sits at its own `position_ids` (0, 1, ... from its first token) and
    attends only to its own earlier tokens (`block_causal_mask`), so every text's hidden
    states equal those of the text run alone. Uses the backbones' public layers
    (`token_embedding`, `position_embedding`, `transformer_layers`, `layer_norm`) and their
    `decoder_attention_mask`; Llama's RoPE positions go through `_compat.rope_positions`.
    """
    if not supports_packing(backbone):
        raise ValueError(f"{type(backbone).__name__}: packed rows need a GPT-2 or Llama backbone "
                         "(with tflm's attention path); extract with packing=False")
    import keras_hub

    mask = block_causal_mask(segment_ids)
    x = backbone.token_embedding(token_ids)
    if isinstance(backbone, keras_hub.models.GPT2Backbone):
        x = backbone.embeddings_add((x, backbone.position_embedding(x, positions=position_ids)))
        for layer in backbone.transformer_layers:
            x = layer(x, decoder_attention_mask=mask)
    else:
        with _compat.rope_positions(position_ids):
            for layer in backbone.transformer_layers:
                x = layer(x, decoder_attention_mask=mask)
    return backbone.layer_norm(x)


def row_arrays(rows, length):
    """(token_ids, segment_ids, position_ids), each (R, length) int32, for rows of id lists.

    `rows[r]` lists the id sequences placed one after another in row r; segment k of a row is
    its k-th sequence (numbered from 1; the padding tail is segment 0 with token 0).
    """
    import numpy as np

    tok = np.zeros((len(rows), length), np.int32)
    seg = np.zeros_like(tok)
    pos = np.zeros_like(tok)
    for r, seqs in enumerate(rows):
        at = 0
        for k, ids in enumerate(seqs, start=1):
            n = len(ids)
            if at + n > length:
                raise ValueError(f"row {r}: {at + n} tokens do not fit a row of {length}")
            tok[r, at:at + n] = ids
            seg[r, at:at + n] = k
            pos[r, at:at + n] = np.arange(n)
            at += n
    return tok, seg, pos

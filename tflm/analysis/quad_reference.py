"""Q_ref: how close a Quad model is to the Quad optimum implied by a cross-entropy model.

For a fixed Phi ((V, d) in code, row w = phi_w; G = Phi Phi^T in the paper's
notation, ``phi.T @ phi`` here) the Quad loss of a feature f on a next token w is
``l(f, w) = -f.phi_w + 1/2 f^T G f``. Its expectation under the true next-token
distribution p*(s) is minimised by f*(s) = G^-1 Phi p*(s), with minimum

    Q* = -1/2 E_s (Phi p*(s))^T G^-1 (Phi p*(s)),

a number in [-1/2, 0] (it is -1/2 E ||P p*||^2 with P the projection onto
Phi's row space). p* is unknown, so a cross-entropy model's predictions
p_xent(s) stand in for it: ``f_hat(s) = G^-1 Phi p_xent(s)`` is the Quad-optimal
feature those predictions imply, and Q_ref is its Quad objective on the real
next tokens of a validation set. Two facts make Q_ref a reference for
"converged":

- for every s, E_{w~p*} l(f_hat(s), w) - E_{w~p*} l(f*(s), w) =
  1/2 ||Phi^T G^-1 Phi (p_xent - p*)||^2 >= 0, so E Q_ref >= Q* and Q_ref ->
  Q* as p_xent -> p* (the gap only counts the part of p_xent - p* in Phi's row
  space);
- a Quad model with the same Phi and a body as good as the cross-entropy
  model's should reach about Q_ref; beating it means its f predicts the next
  token better (in the Quad sense) than p_xent does.

``q_ref_analytic`` = -1/2 mean (Phi p_xent)^T G^-1 (Phi p_xent) is the value
Q_ref would take if the next tokens were drawn from p_xent itself (the
analytic minimum with p_xent in place of p*).
"""

import numpy as np
from keras import ops


def _check_pair(quad_lm, xent_lm):
    if quad_lm.vocabulary_size != xent_lm.vocabulary_size:
        raise ValueError(
            f"{quad_lm.name} (V={quad_lm.vocabulary_size}) and {xent_lm.name} "
            f"(V={xent_lm.vocabulary_size}) do not share a vocabulary"
        )
    fq, fx = quad_lm.tokenizer.fingerprint(), xent_lm.tokenizer.fingerprint()
    if fq != fx:
        raise ValueError(f"{quad_lm.name} and {xent_lm.name} use different tokenizers")


def quad_reference(quad_lm, xent_lm, blocks, batch_size=4, progress=None):
    """Q_ref and the Quad model's own objective on token `blocks` (n, T + 1).

    Inputs are ``blocks[:, :-1]``, next-token targets ``blocks[:, 1:]`` (all
    real: packed blocks have no padding). Phi is the Quad model's (frozen)
    output matrix. Returns a dict: ``q_model`` (mean Quad loss of the Quad
    model's f), ``q_ref`` (of f_hat = G^-1 Phi p_xent), ``q_ref_analytic``,
    ``ratio`` = q_model / q_ref, ``xent_softmax_xent`` (the cross-entropy
    model's mean log loss on the same targets) and ``positions``.
    """
    _check_pair(quad_lm, xent_lm)
    blocks = np.asarray(blocks)
    if blocks.ndim != 2 or blocks.shape[1] < 2:
        raise ValueError(f"blocks must be (n, T + 1) token ids with T >= 1, got shape {blocks.shape}")
    phi = np.asarray(ops.convert_to_numpy(quad_lm.output_embeddings()), dtype=np.float64)
    gram = phi.T @ phi
    sums = dict(q_model=0.0, q_ref=0.0, q_ref_analytic=0.0, xent=0.0)
    n = 0
    for i in range(0, len(blocks), batch_size):
        b = blocks[i : i + batch_size]
        ids, targets = b[:, :-1].astype("int32"), b[:, 1:].reshape(-1)
        mask = np.ones_like(ids)
        f = np.asarray(ops.convert_to_numpy(quad_lm.features(ids, mask)), dtype=np.float64).reshape(-1, phi.shape[1])
        logits = ops.convert_to_numpy(xent_lm.logits(ids, mask)).astype(np.float64).reshape(len(targets), -1)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        z = p.sum(axis=1, keepdims=True)
        sums["xent"] += float(np.sum(np.log(z[:, 0]) - logits[np.arange(len(targets)), targets]))
        phi_p = (p / z) @ phi  # (N, d): Phi p_xent(s)
        f_hat = np.linalg.solve(gram, phi_p.T).T
        phi_w = phi[targets]
        a = np.sum(f_hat * phi_p, axis=1)  # (Phi p)^T G^-1 (Phi p) = f_hat^T G f_hat
        sums["q_ref"] += float(np.sum(0.5 * a - np.sum(f_hat * phi_w, axis=1)))
        sums["q_ref_analytic"] += float(np.sum(-0.5 * a))
        sums["q_model"] += float(np.sum(0.5 * np.sum((f @ gram) * f, axis=1) - np.sum(f * phi_w, axis=1)))
        n += len(targets)
        if progress is not None:
            progress(n)
    out = {k: v / n for k, v in sums.items() if k != "xent"}
    out["ratio"] = out["q_model"] / out["q_ref"] if out["q_ref"] else float("nan")
    out["xent_softmax_xent"] = sums["xent"] / n
    out["positions"] = int(n)
    out["gram_condition_number"] = float(np.linalg.cond(gram))
    return out

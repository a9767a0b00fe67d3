"""Export a frozen LM feature + a fitted linear probe as one TF SavedModel.

Same two-step contract as `tflm.finetune.export` (whose writer this uses):
token ids -> ``{"probabilities"}``, with ``tokenizer.json``, ``predict.py``
and ``tflm_export.json`` in the folder.
"""

import keras
import numpy as np

from tflm.features.feature_extractor import FeatureExtractor
from tflm.features.names import canonical_feature_name
from tflm.finetune.export import _want_raw_text, _write_export
from tflm.probes.linear_probe_head import LinearProbeHead
from tflm.tokenization.text_encoder import TextEncoder


def probe_mode(estimator):
    """"binary", "ovr" or "multinomial": how a fitted sklearn linear classifier makes probabilities.

    A `LogisticProbe` states it (``mode_``). For other estimators it is
    decided by comparing its `predict_proba` with each formula on random
    inputs, so it holds whatever the sklearn version's multi_class rules.
    """
    if getattr(estimator, "mode_", None) in LinearProbeHead.MODES:  # LogisticProbe says it
        return estimator.mode_
    coef = np.asarray(estimator.coef_, np.float64)
    intercept = np.asarray(estimator.intercept_, np.float64).reshape(-1)
    if coef.shape[0] == 1:
        return "binary"
    x = np.random.RandomState(0).normal(size=(8, coef.shape[1]))
    p = estimator.predict_proba(x)
    z = x @ coef.T + intercept
    soft = np.exp(z - z.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    s = 1.0 / (1.0 + np.exp(-z))
    ovr = s / s.sum(1, keepdims=True)
    if np.allclose(p, soft, atol=1e-6):
        return "multinomial"
    if np.allclose(p, ovr, atol=1e-6):
        return "ovr"
    raise ValueError("cannot tell how this estimator computes probabilities (neither softmax nor one-vs-rest)")


def export_probe(lm, W, b, path, prompt=None, feature="f", mode=None, label_names=None, word_ids=None,
                 strip_prompt_space=False, max_length=None, raw_text=False, check_texts=None, extra=None):
    """Export a frozen LM feature + a fitted linear probe as one SavedModel (same contract).

    Args:
        lm: the `LanguageModel` the features came from.
        W: (k, n_features) weights, sklearn's ``coef_`` (one row for a binary probe).
        b: (k,) intercepts, sklearn's ``intercept_``.
        path: output folder.
        prompt: the prompt appended when the probe's features were computed.
        feature: which `FeatureExtractor` output the probe reads ("f",
            "phi_p", "subset", ...).
        mode: "binary" | "multinomial" | "ovr" (see `LinearProbeHead`);
            None: "binary" for one row, else "multinomial". Use
            `export_sklearn_probe` to read it off a fitted estimator.
        word_ids: word-feature token ids (for "subset" / "class" / "posneg").
    """
    feature = canonical_feature_name(feature)
    W = np.atleast_2d(np.asarray(W, np.float64))
    b = np.asarray(b, np.float64).reshape(-1)
    if b.shape[0] != W.shape[0]:
        raise ValueError(f"W has {W.shape[0]} rows but b has {b.shape[0]} entries")
    mode = mode or ("binary" if W.shape[0] == 1 else "multinomial")
    extractor = FeatureExtractor(lm.backbone, lm.head, features=[feature], word_ids=word_ids, name="features")
    head = LinearProbeHead(W.shape[1], W.shape[0], mode=mode, name="probe")
    head.build()
    head.kernel.assign(W.T.astype("float32"))
    head.bias.assign(b.astype("float32"))
    probe_model = _ProbeModel(extractor, head, feature, name="probe_model")
    dummy = {"token_ids": np.zeros((1, 1), np.int32), "padding_mask": np.ones((1, 1), np.int32)}
    n_out = int(np.asarray(probe_model(dummy)).shape[-1])
    got = int(np.asarray(extractor(dummy)[feature]).shape[-1])
    if got != W.shape[1]:
        raise ValueError(f"feature {feature!r} has {got} dimensions but W has {W.shape[1]} columns")

    def probabilities(token_ids, padding_mask):
        return probe_model({"token_ids": token_ids, "padding_mask": padding_mask})

    meta = {
        "kind": "linear_probe",
        "feature": feature,
        "probe_mode": mode,
        "num_classes": n_out,
        "label_names": list(label_names) if label_names is not None else [str(i) for i in range(n_out)],
        "model": lm.name,
        **(extra or {}),
    }
    encoder = TextEncoder(lm.tokenizer, prompt, int(max_length or lm.max_sequence_length), strip_prompt_space)
    raw = _want_raw_text(raw_text, lm.tokenizer)
    return _write_export(path, probabilities, [probe_model], encoder, meta, raw, check_texts)


def export_sklearn_probe(lm, estimator, path, **kwargs):
    """`export_probe` with W, b and the probability mode read off a fitted sklearn estimator."""
    return export_probe(lm, estimator.coef_, estimator.intercept_, path, mode=probe_mode(estimator), **kwargs)


class _ProbeModel(keras.Model):
    """FeatureExtractor -> one feature -> LinearProbeHead (for export)."""

    def __init__(self, extractor, head, feature, **kwargs):
        super().__init__(**kwargs)
        self.extractor = extractor
        self.head = head
        self.feature = feature

    def call(self, inputs):
        return self.head(self.extractor(inputs)[self.feature])

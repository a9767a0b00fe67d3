"""Export of a fitted `LogisticProbe` (tflm.probes.export): the SavedModel predicts as the probe."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from tflm.features.feature_extractor import FeatureExtractor
from tflm.models import load_lm
from tflm.probes import LogisticProbe
from tflm.probes.export import export_sklearn_probe, probe_mode
from tflm.probes.linear_probe_head import LinearProbeHead
from tflm.tokenization.text_encoding import pad_batch


def test_linear_probe_head_modes_and_config():
    head = LinearProbeHead(3, 2, mode="ovr", name="probe")
    assert LinearProbeHead.from_config(head.get_config()).get_config() == head.get_config()
    with pytest.raises(ValueError, match="probe mode"):
        LinearProbeHead(3, 2, mode="nope")
    with pytest.raises(ValueError, match="one row"):
        LinearProbeHead(3, 2, mode="binary")


@pytest.mark.slow
def test_exported_one_vs_rest_probe_predicts_as_the_probe(tmp_path):
    import tensorflow as tf

    lm = load_lm("tiny-gpt2")
    rng = np.random.default_rng(0)
    ids = [list(rng.integers(0, lm.vocabulary_size, size=int(rng.integers(3, 12)))) for _ in range(90)]
    token_ids, mask = pad_batch(ids)
    f = np.asarray(FeatureExtractor(lm.backbone, lm.head, features=["f"])(
        {"token_ids": token_ids, "padding_mask": mask})["f"], np.float64)
    y = np.argmax(f[:, :3] + 0.1 * rng.normal(size=(90, 3)), axis=1)  # 3 learnable classes
    probe = LogisticProbe(backend="tf").fit(f, y)
    assert probe_mode(probe) == "ovr"  # read off the probe (no predict_proba needed)
    export_sklearn_probe(lm, probe, str(tmp_path / "probe"), feature="f", raw_text=False, max_length=64)
    sig = tf.saved_model.load(str(tmp_path / "probe")).signatures["serving_default"]
    p = sig(token_ids=tf.constant(token_ids), padding_mask=tf.constant(mask))["probabilities"].numpy()
    np.testing.assert_array_equal(np.argmax(p, axis=1), probe.predict(f))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)

"""Q_ref: the Quad objective of f_hat = G^-1 Phi p_xent, checked against the V-dimensional formulas."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tflm  # noqa: E402
from tflm.analysis.quad_reference import quad_reference  # noqa: E402
from tflm.analysis.theory import expected_quad_loss, quad_optimum, softmax  # noqa: E402


@pytest.fixture(scope="module")
def pair():
    return tflm.load_lm("tiny-gpt2-untied"), tflm.load_lm("tiny-gpt2")


def test_quad_reference_matches_v_dim_formulas(pair):
    quad_lm, xent_lm = pair
    blocks = np.random.default_rng(0).integers(0, 50257, size=(3, 9)).astype("int32")
    res = quad_reference(quad_lm, xent_lm, blocks, batch_size=2)

    ids, targets = blocks[:, :-1], blocks[:, 1:].reshape(-1)
    mask = np.ones_like(ids)
    phi = keras.ops.convert_to_numpy(quad_lm.output_embeddings()).astype(np.float64)
    p = softmax(keras.ops.convert_to_numpy(xent_lm.logits(ids, mask)).reshape(len(targets), -1))
    f_hat = quad_optimum(phi, p)  # (Phi Phi^T)^-1 Phi p_xent per position

    def quad_loss(f):  # -f.phi_w + 1/2 ||Phi^T f||^2 through the (N, V) logits, not the Gram matrix
        logits = f @ phi.T
        return np.mean(-logits[np.arange(len(targets)), targets] + 0.5 * np.sum(logits**2, axis=1))

    f_model = keras.ops.convert_to_numpy(quad_lm.features(ids, mask)).astype(np.float64).reshape(len(targets), -1)
    assert res["positions"] == 3 * 8
    np.testing.assert_allclose(res["q_ref"], quad_loss(f_hat), rtol=1e-6)
    np.testing.assert_allclose(res["q_model"], quad_loss(f_model), rtol=1e-5)
    # With next tokens drawn from p_xent the expected Quad loss of f_hat is the analytic minimum.
    np.testing.assert_allclose(res["q_ref_analytic"], np.mean(expected_quad_loss(phi, f_hat, p)), rtol=1e-6)
    assert res["q_ref_analytic"] < 0 and res["ratio"] == pytest.approx(res["q_model"] / res["q_ref"])
    log_p = np.log(p[np.arange(len(targets)), targets])
    np.testing.assert_allclose(res["xent_softmax_xent"], -np.mean(log_p), rtol=1e-6)


def test_quad_reference_rejects_bad_blocks(pair):
    with pytest.raises(ValueError, match="blocks must be"):
        quad_reference(*pair, np.zeros((2,), "int32"))


def test_analyze_cli_reports_q_ref(tmp_path):
    import json

    from tflm import cli

    valid = tmp_path / "valid.txt"
    valid.write_text("A clever script and warm performances; the ending dragged a little. " * 40 + "\n")
    out = tmp_path / "an"
    assert cli.main(["analyze", "--quad-model", "tiny-gpt2-untied", "--xent-model", "tiny-gpt2",
                     "--valid", str(valid), "--valid-blocks", "1", "--out", str(out)]) == 0
    res = json.load(open(out / "analysis.json"))["quad_reference"]
    assert res["blocks"] == 1 and res["positions"] == res["seq_len"] == 128
    assert res["q_ref_analytic"] < 0 and np.isfinite(res["q_model"])
    assert "Quad objective vs Q_ref" in (out / "analysis.md").read_text()
    with pytest.raises(SystemExit):
        cli.main(["analyze", "--quad-model", "tiny-gpt2-untied", "--valid-blocks", "x"])
    assert cli.main(["analyze", "--quad-model", "tiny-gpt2-untied", "--out", str(out)]) == 2


def test_quad_table_omits_tasks_without_data(tmp_path):
    """A task whose data is not here is left out of the table and named once, with how to add it."""
    from tflm.jobs.quad_comparison import compare_quad_xent, quad_table

    (tmp_path / "sst2").mkdir()
    for split in ("train", "test"):
        (tmp_path / "sst2" / f"{split}.tsv").write_text(
            "label\ttext\n" + "".join(f"{i % 2}\t{'good' if i % 2 else 'bad'} film {i}\n" for i in range(24)))
    logs = []
    res = compare_quad_xent([("tiny", "tiny-gpt2-untied", "tiny-gpt2")], tasks=["sst2", "cr", "mpqa"],
                            data_dir=str(tmp_path), log=logs.append)
    assert res["tasks"] == ["sst2"] and list(res["omitted"]) == ["cr", "mpqa"]
    assert "cr/all.tsv" in res["omitted"]["cr"]
    assert [e["model"] for e in res["entries"]] == ["quad", "xent"] and all(set(e["f"]) == {"sst2"} for e in res["entries"])
    header, rows = quad_table(res["entries"], res["tasks"])
    assert header[-1] == "sst2 f" and "no data" not in str(rows)
    assert sum("Omitted cr, mpqa: their data does not ship" in line and "--data DIR" in line for line in logs) == 1

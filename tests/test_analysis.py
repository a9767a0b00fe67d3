"""tflm.analysis: quadratic log-partition fit, Gaussian heuristic, linear relation, plots."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from numpy.testing import assert_allclose  # noqa: E402

from tflm.analysis import (  # noqa: E402
    CheckpointRecord,
    check_same_architecture,
    collect_log_partition,
    evaluate_quadratic_fit,
    fit_gaussian_log_partition,
    fit_linear_relation,
    fit_quadratic_log_partition,
    fit_reference_curve,
    linear_relation_report,
    n_quadratic_params,
    plot_accuracy_vs_loss,
    plot_log_partition_fit,
    quadratic_design,
)
from conftest import colour_pixels, read_png  # noqa: E402
from tflm.analysis import theory  # noqa: E402


def known_quadratic(d=4, seed=0):
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(d, d))
    A = M + M.T
    b, c = rng.normal(size=d), 3.7
    return A, b, c


def test_design_and_param_count():
    f = np.random.default_rng(1).normal(size=(5, 3))
    X = quadratic_design(f)
    assert X.shape == (5, n_quadratic_params(3)) == (5, 6 + 3 + 1)
    # Coefficients = upper triangle of A, then b, then c, reproduce 1/2 f^T A f + b f + c.
    A, b, c = known_quadratic(3)
    w = np.r_[A[np.triu_indices(3)], b, c]
    assert_allclose(X @ w, 0.5 * np.einsum("ni,ij,nj->n", f, A, f) + f @ b + c, atol=1e-12)


def test_quadratic_fit_recovers_known_quadratic(tmp_path):
    d = 4
    A, b, c = known_quadratic(d)
    rng = np.random.default_rng(2)
    f = rng.normal(size=(200, d))
    y = 0.5 * np.einsum("ni,ij,nj->n", f, A, f) + f @ b + c
    fit = fit_quadratic_log_partition(f[:150], y[:150])
    assert_allclose(fit.A, A, atol=1e-9)
    assert_allclose(fit.A, fit.A.T)
    assert_allclose(fit.b, b, atol=1e-9)
    assert abs(fit.c - c) < 1e-9
    assert fit.n_params == n_quadratic_params(d) == 15
    ev = evaluate_quadratic_fit(fit, f[150:], y[150:])
    assert ev["r2"] > 1 - 1e-12 and ev["mean_relative_error"] < 1e-9 and ev["n"] == 50
    # Ridge shrinks but still fits well.
    ridge = fit_quadratic_log_partition(f[:150], y[:150], ridge=1e-3)
    assert evaluate_quadratic_fit(ridge, f[150:], y[150:])["r2"] > 0.999
    # Plot: fitted vs true with y = x and R^2 in the legend.
    out = plot_log_partition_fit(str(tmp_path / "logz.png"), y[150:],
                                 {"quadratic": fit.predict(f[150:]), "ridge": ridge.predict(f[150:])})
    img = read_png(out, (720, 720))  # 6 x 6 inches at 120 dpi
    # 50 ridge squares (C1) drawn over the exact fit's circles (C0: then only its legend marker shows)
    assert colour_pixels(img, "C1") > 1000 and colour_pixels(img, "C0") > 20


def test_quadratic_fit_too_few_contexts():
    f = np.random.default_rng(3).normal(size=(14, 4))  # 15 parameters needed
    with pytest.raises(ValueError, match=r"15 parameters.*only 14 contexts"):
        fit_quadratic_log_partition(f, np.zeros(14))
    fit_quadratic_log_partition(np.random.default_rng(3).normal(size=(15, 4)), np.zeros(15))


def test_log_partition_pipeline_on_random_lm(tmp_path):
    rng = np.random.default_rng(4)
    d, V = 3, 300
    phi = rng.normal(size=(V, d)) * 0.5
    f = rng.normal(size=(120, d))
    f64, logz = collect_log_partition(f, phi, batch_rows=50)
    assert_allclose(logz, theory.log_partition(phi, f), atol=1e-10)
    _, logz32 = collect_log_partition(f.astype(np.float32), phi, dtype="float32")
    assert_allclose(logz32, logz, rtol=1e-5)
    with pytest.raises(ValueError, match="Phi must be"):
        collect_log_partition(f[:, :2], phi)

    fit = fit_quadratic_log_partition(f64[:80], logz[:80])
    ev = evaluate_quadratic_fit(fit, f64[80:], logz[80:])
    assert ev["r2"] > 0.9  # smooth in a bounded region, nearly quadratic
    unigram = rng.dirichlet(np.ones(V))
    for weights in (None, unigram):
        gauss = fit_gaussian_log_partition(phi, f64[:80], logz[:80], weights=weights)
        assert gauss.kind == "gaussian" and np.isfinite(gauss.train_r2)
        assert_allclose(gauss.A, np.cov(phi.T, aweights=weights, bias=True), atol=1e-12)
        gev = evaluate_quadratic_fit(gauss, f64[80:], logz[80:])
        assert np.isfinite(gev["r2"]) and np.isfinite(gev["mean_relative_error"])
    out = plot_log_partition_fit(str(tmp_path / "lz.png"), logz[80:],
                                 {"quadratic": fit.predict(f64[80:]), "Gaussian": gauss.predict(f64[80:])},
                                 title="test")
    img = read_png(out, (720, 720))
    assert colour_pixels(img, "C0") > 300 and colour_pixels(img, "C1") > 1000  # 40 points of each fit


def test_gaussian_heuristic_exact_on_quadrature_vocabulary():
    mu, sigma = np.array([0.3, -0.2]), np.array([[0.5, 0.1], [0.1, 0.3]])
    phi, unigram = theory.gaussian_quadrature_vocabulary(mu, sigma, 20)
    theta = np.random.default_rng(5).normal(size=(40, 2))
    _, logz = collect_log_partition(theory.augment_bias(theta), phi)
    gauss = fit_gaussian_log_partition(phi[:, :2], theta, logz, weights=unigram)
    assert_allclose(gauss.A, sigma, atol=1e-10)
    assert_allclose(gauss.b, mu, atol=1e-8)
    assert gauss.train_r2 > 1 - 1e-12


def test_linear_relation_recovers_affine_map():
    rng = np.random.default_rng(6)
    d_in, d_out, n = 5, 3, 200
    A, b = rng.normal(size=(d_out, d_in)), rng.normal(size=d_out)
    f = rng.normal(size=(n, d_in))
    target = f @ A.T + b
    rel = fit_linear_relation(f, target)
    assert_allclose(rel.A, A, atol=1e-10)
    assert_allclose(rel.b, b, atol=1e-10)
    rep = linear_relation_report(f, target, train_fraction=0.75, seed=1)
    assert rep["test_relative_error"] < 1e-10 and rep["train_relative_error"] < 1e-10
    assert len(rep["train_idx"]) == 150 and len(rep["test_idx"]) == 50
    assert set(rep["train_idx"]).isdisjoint(rep["test_idx"])
    assert_allclose(rep["predicted"], target, atol=1e-9)
    # Noise gives a positive held-out error; ridge runs and stays close.
    noisy = target + 0.1 * rng.normal(size=target.shape)
    rep2 = linear_relation_report(noisy.copy(), noisy, ridge=1.0)
    assert rep2["test_relative_error"] < 1e-2
    rep3 = linear_relation_report(f, noisy, ridge=1e-2, train_idx=np.arange(100))
    assert 0 < rep3["test_relative_error"] < 0.2 and len(rep3["test_idx"]) == 100
    with pytest.raises(ValueError, match="parameters per output"):
        fit_linear_relation(f[:4], target[:4])


def records(arch_b=None):
    arch = {"layers": 4, "hidden_dim": 256, "heads": 4, "vocab": 50257}
    out = []
    for i, loss in enumerate([5.1, 4.6, 4.2, 3.9, 3.75, 3.7]):
        out.append({"name": f"step{i * 1000}", "architecture": dict(arch), "val_xent": loss,
                    "probe_accuracy": 0.82 - 0.12 * np.sqrt(loss - 3.6)})
    if arch_b is not None:
        out[2]["architecture"] = arch_b
        out.append(CheckpointRecord("other", arch_b, 4.0, 0.7))
    return out


def test_accuracy_vs_loss_rejects_mixed_architectures(tmp_path):
    arch_b = {"layers": 6, "hidden_dim": 256, "heads": 4, "vocab": 50257}
    with pytest.raises(ValueError, match=r"\['step2000', 'other'\].*layers: 4 vs 6"):
        check_same_architecture(records(arch_b))
    with pytest.raises(ValueError, match="one architecture"):
        plot_accuracy_vs_loss(records(arch_b), str(tmp_path / "x.png"))
    assert not (tmp_path / "x.png").exists()


def test_accuracy_vs_loss_plot(tmp_path):
    recs = records()
    assert check_same_architecture(recs)["layers"] == 4
    ref = fit_reference_curve([r["val_xent"] for r in recs], [r["probe_accuracy"] for r in recs])
    # The points lie exactly on the shape with loss_min = 3.6; the grid search gets close.
    assert ref["c"] > 0 and ref["sse"] < 1e-4
    exact = fit_reference_curve([r["val_xent"] for r in recs], [r["probe_accuracy"] for r in recs],
                                loss_min=3.6)
    assert abs(exact["a"] - 0.82) < 1e-10 and abs(exact["c"] - 0.12) < 1e-10
    out = plot_accuracy_vs_loss(recs, str(tmp_path / "acc.png"))
    img = read_png(out["path"], (840, 660))  # 7 x 5.5 inches at 120 dpi
    assert colour_pixels(img, "C0") > 400  # 6 checkpoints (one point and its legend marker: ~200 pixels)
    assert "reference shape" in out["caption"] and "not a claim" in out["caption"]

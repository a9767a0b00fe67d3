"""Smoke and behaviour tests of the end-to-end jobs (features, probe, analyze, reproduce) on tiny data."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from conftest import colour_pixels, markdown_sections, markdown_tables, read_png
from tflm.cli import main
from tflm.jobs.probe_job import run_probes
from tflm.jobs.pattern_checks import pattern_checks
from tflm.jobs.reproduce_job import reproduce
from tflm.report import fmt

SHIPPED = os.path.join(os.path.dirname(__file__), "..", "tflm", "data", "sst2")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Small real SST-2 and CR subsets in the shared-data layout."""
    root = tmp_path_factory.mktemp("data")
    for split, n in (("train", 60), ("dev", 20), ("test", 40)):
        lines = open(os.path.join(SHIPPED, f"{split}.tsv"), encoding="utf-8").read().splitlines()
        (root / "sst2").mkdir(exist_ok=True)
        (root / "sst2" / f"{split}.tsv").write_text("\n".join(lines[: n + 1]) + "\n", encoding="utf-8")
    cr = ["label\ttext"] + [f"{i % 2}\t{'great phone' if i % 2 else 'awful battery'} number {i}" for i in range(60)]
    (root / "cr").mkdir()
    (root / "cr" / "all.tsv").write_text("\n".join(cr) + "\n", encoding="utf-8")
    return str(root)


@pytest.fixture(scope="module")
def f_probe_accuracy(data_dir):
    """Test accuracy of the paper's probe on tiny-gpt2's f (no prompt), computed without the jobs."""
    from tflm.features import SentenceFeatures
    from tflm.models import load_lm
    from tflm.probes import logistic_probe
    from tflm.tasks import load_split

    sf = SentenceFeatures(load_lm("tiny-gpt2"), progress=False)
    (tr, y_tr), (te, y_te) = (load_split("sst2", split, data_dir) for split in ("train", "test"))
    return logistic_probe(sf.f(tr), y_tr, sf.f(te), y_te)["test_accuracy"]


def test_probe_job_table_and_files(tmp_path, data_dir, f_probe_accuracy):
    out = str(tmp_path / "probe")
    res = run_probes("tiny-gpt2", ["sst2", "cr"], ["f", "phi_p", "class", "zeroshot"], out_dir=out,
                     data_dir=data_dir, prompt_modes=(False, True), cache_dir="", progress=False, log=lambda *a: None)
    rows = res["rows"]
    assert {r["row"] for r in rows} == {"sst2", "sst2*", "cr", "cr*"}
    f_row = next(r for r in rows if r["row"] == "sst2" and r["feature"] == "f")
    assert f_row["n_train"] == 60 and f_row["n_test"] == 40 and f_row["test_accuracy"] == f_probe_accuracy
    cr_row = next(r for r in rows if r["row"] == "cr" and r["feature"] == "f")
    assert cr_row["n_splits"] == 10 and len(cr_row["test_accuracies"]) == 10
    zs = next(r for r in rows if r["row"] == "sst2*" and r["feature"] == "zeroshot")
    assert zs["zero_shot_word_variants"] and "train_accuracy" in zs
    saved = json.load(open(os.path.join(out, "results.json")))
    assert len(saved["rows"]) == len(rows)
    md = open(os.path.join(out, "results.md")).read()
    assert "| sst2* |" in md and "| task | f | phi_p | class | zeroshot | majority |" in md


def test_probe_cli_errors(capsys, data_dir):
    assert main(["probe", "--model", "tiny-gpt2", "--task", "sst2", "--features", "f,bogus", "--data", data_dir]) == 2
    assert "unknown feature name" in capsys.readouterr().err
    assert main(["probe", "--model", "tiny-gpt2", "--task", "nosuchtask", "--data", data_dir]) == 2
    assert "nosuchtask" in capsys.readouterr().err


def test_features_cli_writes_npz(tmp_path, data_dir):
    out = str(tmp_path / "f.npz")
    assert main(["features", "--model", "tiny-gpt2", "--task", "sst2", "--data", data_dir, "--split", "all",
                 "--prompt", "--features", "f,phi_p,subset,proj", "--out", out, "--cache-dir", str(tmp_path / "c")]) == 0
    z = np.load(out)
    assert z["f"].shape == (120, 16) and z["proj"].shape == (120, 16) and z["subset"].shape[0] == 120
    assert list(z["split"][:1]) == ["train"] and z["labels"].shape == (120,)
    meta = json.load(open(out + ".json"))
    assert meta["prompt"] == " This movie is " and meta["word_variants"]["subset"]


def test_pattern_checks_say_plainly_when_the_pattern_fails():
    rows = [
        {"row": "t", "prompt": False, "feature": "f", "test_accuracy": 0.8, "majority": 0.5},
        {"row": "t", "prompt": False, "feature": "phi_p", "test_accuracy": 0.85, "majority": 0.5},
        {"row": "t", "prompt": False, "feature": "class", "test_accuracy": 0.6, "majority": 0.5},
        {"row": "t*", "prompt": True, "feature": "class", "test_accuracy": 0.55, "majority": 0.5},
    ]
    notes = pattern_checks(rows)
    assert "FAILS: t: f (80.0) >= phi_p (85.0)" in notes
    assert "holds: t: phi_p (85.0) > best word feature class (60.0)" in notes
    assert "FAILS: prompt helps class: t 60.0 -> t* 55.0" in notes


def test_reproduce_writes_report(tmp_path, data_dir, f_probe_accuracy):
    out = str(tmp_path / "rep")
    res = reproduce(model="tiny-gpt2", quad_model="tiny-gpt2-untied", tasks=["sst2"], data_dir=data_dir,
                    out_dir=out, contexts=400, pca_dims=4, log=lambda *a: None)
    assert set(res["models"]) == {"model", "quad"}
    report = open(os.path.join(out, "REPORT.md")).read()
    for part in ("Table 1 shape", "Quad vs cross-entropy", "Log-partition check", "pattern", "Machine"):
        assert part in report
    sections = markdown_sections(report)
    (header, table), = markdown_tables(sections["Table 1 shape: tiny-gpt2"])
    assert header == ["task", "f", "phi_p", "subset", "class", "zeroshot", "majority"]
    assert [r[0] for r in table] == ["sst2", "sst2*"] and table[0][1] == fmt(f_probe_accuracy)
    # grouped bars, 2 models x 2 rows x 5 features: (1.2 * 4 * 5 / 2 + 2) x 4 inches at 100 dpi; f's bars in C0
    assert colour_pixels(read_png(os.path.join(out, "table1.png"), (1400, 400)), "C0") > 1000
    img = read_png(os.path.join(out, "log_partition.png"), (720, 720))  # 100 held-out contexts, two fits
    assert colour_pixels(img, "C0") > 300 and colour_pixels(img, "C1") > 300


def test_main_job_leads_with_the_real_lms(tmp_path, data_dir, monkeypatch):
    """`tflm reproduce` on the shipped models: the real LMs' rows open the report and table1.png, the small
    models follow in their own section, and a task without data is named once instead of printing "no data".
    tiny-llama and tiny-gpt2 stand in for SmolLM2 and Gemma 3."""
    out = str(tmp_path / "main")
    assert main(["reproduce", "--data", data_dir, "--max-train", "40", "--real-lms", "tiny-llama,tiny-gpt2",
                 "--real-lm-max-train", "16", "--real-lm-max-test", "8", "--out", out]) == 0
    report = open(os.path.join(out, "REPORT.md"), encoding="utf-8").read()
    headings = [line for line in report.splitlines() if line.startswith("## ")]
    assert headings[:2] == ["## Real pretrained language models on sst2", "## The shipped small models"]
    sections = markdown_sections(report)
    (header, table), = markdown_tables(sections["Real pretrained language models on sst2"])
    assert header[:3] == ["model", "task", "f"] and header[-1] == "train / test"
    assert [r[:2] for r in table] == [["tiny-llama", "sst2"], ["tiny-llama", "sst2*"], ["tiny-gpt2", "sst2"],
                                      ["tiny-gpt2", "sst2*"]]
    assert {r[-1] for r in table} == {"16 / 8"}
    assert "no data" not in report and report.count("Omitted sst5, mpqa: their data does not ship") == 1
    (qh, qrows), = markdown_tables(sections["Quad vs cross-entropy"])
    assert qh[-2:] == ["sst2 f", "cr f"] and len(qrows) == 2
    res = json.load(open(os.path.join(out, "results.json")))
    assert [e["spec"] for e in res["real_lms"]] == ["tiny-llama", "tiny-gpt2"]
    assert res["quad"]["omitted"].keys() == {"sst5", "mpqa"}
    # two panels: real LMs (4 groups x 7 features: 18.8 x 4 inches) over the small models (4 x 5, 0.7 x 4 inches)
    img = read_png(os.path.join(out, "table1.png"), (1880, 680))
    assert colour_pixels(img[:400], "C0") > 500 and colour_pixels(img[400:], "C0") > 300


def test_analyze_cli(tmp_path, data_dir, f_probe_accuracy):
    out = str(tmp_path / "an")
    assert main(["analyze", "--model", "tiny-gpt2", "--task", "sst2", "--data", data_dir, "--contexts", "300",
                 "--pca-dims", "4", "--out", out]) == 0
    res = json.load(open(os.path.join(out, "analysis.json")))
    assert res["log_partition"]["quadratic_params"] == 4 * 5 // 2 + 4 + 1
    assert res["linear_relation"]["probe_f"] == f_probe_accuracy
    img = read_png(os.path.join(out, "log_partition.png"), (720, 720))  # 75 held-out contexts, two fits
    assert colour_pixels(img, "C0") > 300 and colour_pixels(img, "C1") > 300


def test_analyze_rejects_too_few_contexts(tmp_path, data_dir, capsys):
    assert main(["analyze", "--model", "tiny-gpt2", "--task", "sst2", "--data", data_dir, "--contexts", "20",
                 "--pca-dims", "0", "--out", str(tmp_path)]) == 2
    assert "contexts" in capsys.readouterr().err


def test_accuracy_vs_loss_rejects_mixed_architectures(tmp_path, data_dir, capsys):
    from tflm.models import load_lm
    from tflm.models.keras_hub_preset import save_preset_dir

    for name, spec in (("a", "tiny-gpt2"), ("b", "tiny-llama")):
        save_preset_dir(load_lm(spec), str(tmp_path / name), model_card={"val_softmax_xent": 5.0})
    assert main(["analyze", "--task", "sst2", "--data", data_dir, "--checkpoints",
                 f"{tmp_path / 'a'},{tmp_path / 'b'}", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "differ" in err and err.count("\n") == 1


@pytest.mark.slow
def test_reproduce_finetune_column(tmp_path, data_dir, f_probe_accuracy):
    res = reproduce(model="tiny-gpt2", tasks=["sst2"], data_dir=data_dir, out_dir=str(tmp_path),
                    features=["f"], contexts=300, pca_dims=4, finetune=True,
                    finetune_kwargs={"lrs": [1e-4], "batch_sizes": [8], "epochs": 1, "verbose": 0},
                    log=lambda *a: None)
    ft = res["finetune"]["sst2"]
    with open(os.path.join(tmp_path, "finetune_sst2", "results.json"), encoding="utf-8") as f:
        saved = json.load(f)
    assert ft["selected"]["lr"] == 1e-4 and ft["test_accuracy"] == saved["test_accuracy"]
    (header, table), = markdown_tables(markdown_sections(open(os.path.join(tmp_path, "REPORT.md")).read())[
        "Table 1 shape: tiny-gpt2"])
    assert header == ["task", "f", "FT", "majority"]
    assert table[0][:3] == ["sst2", fmt(f_probe_accuracy), fmt(saved["test_accuracy"])]
    assert table[1][0] == "sst2*" and table[1][2] == "-"  # no fine-tuning with the prompt

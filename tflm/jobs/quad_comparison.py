"""Quad vs cross-entropy: f probes of (Quad model, cross-entropy model) pairs on several tasks."""

from tflm.jobs.analyze_job import model_card
from tflm.jobs.probe_job import run_probes
from tflm.models import load_lm
from tflm.report import fmt
from tflm.tasks import DataError

QUAD_TASKS = ("sst2", "sst5", "cr", "mpqa")


def compare_quad_xent(pairs, tasks=QUAD_TASKS, data_dir=None, max_train=None, cache_dir="", log=print):
    """Probe f of both models of every pair on `tasks` (no prompt).

    `pairs`: [(name, quad model SPEC, cross-entropy model SPEC)], each pair
    trained on the same corpus, tokens and body. Returns one dict per model:
    pair, model ("quad" / "xent"), spec, name, the card's objective, steps,
    val_objective, q_ref, val_perplexity, ``f``: {task: test accuracy} and
    ``missing``: {task: why} for tasks without data here (shown as "no data",
    and logged: without `data_dir` a fresh install ships SST-2 only).
    """
    entries = []
    for pair, quad, xent in pairs:
        for label, spec in (("quad", quad), ("xent", xent)):
            lm = load_lm(spec) if isinstance(spec, str) else spec
            card = model_card(spec)
            log(f"\n== Quad vs xent, {pair}: {label} ({lm.name}) ==")
            f, missing = {}, {}
            for task in tasks:
                try:
                    probes = run_probes(lm, [task], ["f"], data_dir=data_dir, prompt_modes=(False,),
                                        max_train=max_train, cache_dir=cache_dir, progress=False, log=log)
                except DataError as e:
                    missing[task] = str(e)
                    log(f"  {task}: no data ({e})")
                    continue
                f.update({r["row"]: r.get("test_accuracy") for r in probes["rows"] if r["feature"] == "f"})
            entries.append({
                "pair": pair, "model": label, "spec": str(spec), "name": lm.name,
                "objective": card.get("objective"), "steps": card.get("steps"),
                "val_objective": card.get("val_objective"), "q_ref": card.get("q_ref"),
                "val_perplexity": card.get("val_perplexity"), "f": f, "missing": missing,
            })
    return entries


def quad_table(entries, tasks=QUAD_TASKS):
    """(header, rows): one row per model, f test accuracy (%) per task."""
    header = ["pair", "model", "steps", "val objective", "Q_ref", "val ppl"] + [f"{t} f" for t in tasks]

    def num(x, spec):
        return "-" if x is None else format(x, spec)

    rows = [[e["pair"], e["model"], num(e["steps"], "d"), num(e["val_objective"], ".4g"), num(e["q_ref"], ".4g"),
             num(e["val_perplexity"], ".1f")]
            + ["no data" if t in e.get("missing", {}) else fmt(e["f"].get(t)) for t in tasks] for e in entries]
    return header, rows

"""Quad vs cross-entropy: f probes of (Quad model, cross-entropy model) pairs on several tasks."""

from tflm.jobs.analyze_job import model_card
from tflm.jobs.probe_job import run_probes
from tflm.models import load_lm
from tflm.report import fmt
from tflm.tasks.splits import missing_data

QUAD_TASKS = ("sst2", "sst5", "cr", "mpqa")


def compare_quad_xent(pairs, tasks=QUAD_TASKS, data_dir=None, max_train=None, cache_dir="", log=print):
    """Probe f of both models of every pair on the `tasks` whose data is here (no prompt).

    `pairs`: [(name, quad model SPEC, cross-entropy model SPEC)], each pair
    trained on the same corpus, tokens and body. Returns {"tasks": the tasks
    probed, "omitted": {task: why} for tasks without data here (without
    `data_dir` a fresh install ships SST-2 only), "entries": one dict per model:
    pair, model ("quad" / "xent"), spec, name, the card's objective, steps,
    val_objective, q_ref, val_perplexity, ``f``: {task: test accuracy}}.
    """
    omitted = {t: why for t in tasks if (why := missing_data(t, data_dir))}
    tasks = [t for t in tasks if t not in omitted]
    if omitted:
        log(f"Quad vs xent: {omitted_line(omitted)}")
    entries = []
    for pair, quad, xent in pairs:
        for label, spec in (("quad", quad), ("xent", xent)):
            lm = load_lm(spec) if isinstance(spec, str) else spec
            card = model_card(spec)
            log(f"\n== Quad vs xent, {pair}: {label} ({lm.name}) ==")
            f = {}
            if tasks:
                probes = run_probes(lm, tasks, ["f"], data_dir=data_dir, prompt_modes=(False,),
                                    max_train=max_train, cache_dir=cache_dir, progress=False, log=log)
                f = {r["row"]: r.get("test_accuracy") for r in probes["rows"] if r["feature"] == "f"}
            entries.append({
                "pair": pair, "model": label, "spec": str(spec), "name": lm.name,
                "objective": card.get("objective"), "steps": card.get("steps"),
                "val_objective": card.get("val_objective"), "q_ref": card.get("q_ref"),
                "val_perplexity": card.get("val_perplexity"), "f": f,
            })
    return {"tasks": tasks, "omitted": omitted, "entries": entries}


def omitted_line(omitted):
    """One line naming the tasks left out of a table for lack of data, and how to add them."""
    names = ", ".join(omitted)
    return (f"Omitted {names}: {'its' if len(omitted) == 1 else 'their'} data does not ship with tflm (SST-2 does); "
            "pass --data DIR with the task folders (e.g. DIR/sst5/train.tsv, DIR/cr/all.tsv) to add "
            + ("it" if len(omitted) == 1 else "them") + ".")


def quad_table(entries, tasks):
    """(header, rows): one row per model, f test accuracy (%) per task."""
    header = ["pair", "model", "steps", "val objective", "Q_ref", "val ppl"] + [f"{t} f" for t in tasks]

    def num(x, spec):
        return "-" if x is None else format(x, spec)

    rows = [[e["pair"], e["model"], num(e["steps"], "d"), num(e["val_objective"], ".4g"), num(e["q_ref"], ".4g"),
             num(e["val_perplexity"], ".1f")]
            + [fmt(e["f"].get(t)) for t in tasks] for e in entries]
    return header, rows

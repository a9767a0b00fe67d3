"""The paper's claim across LMs: probe accuracy against the LM's cross-entropy in bits per byte.

`tflm analyze --across-lms SPEC,SPEC,... --valid FILE` measures, for each
model, the bits per byte on one held-out text (`tflm.analysis.bits_per_byte`)
and the test accuracy of the paper's probe on f and on Phi p_f (no prompt)
for each task, and writes results.json, across_lms.md and
accuracy_vs_bits_per_byte.png. Unlike `--checkpoints` (one architecture),
models here differ in size, data and tokenizer, so the plot shows where each
model lands, not the effect of the loss alone.
"""

import os
import time

from tflm.analysis.bits_per_byte import bits_per_byte
from tflm.callbacks import read_json
from tflm.atomic import save_figure, write_atomic
from tflm.features import SentenceFeatures
from tflm.models.load_lm import resolve_lm
from tflm.probes import logistic_probe
from tflm.report import fmt, machine_info, machine_line, markdown_table, write_json
from tflm.tasks.splits import load_texts, resolve_task, subsample

FEATURES = ("f", "phi_p")
CAVEAT = ("Each point is one model: they differ in size, training data, tokenizer and objective, so this "
          "shows where each lands, not that the loss alone moves the accuracy; a handful of models is not a trend. "
          "A Quad model's bits per byte are those of the softmax of its logits, which its objective does not train.")


def held_out_texts(path, n_docs, max_chars=800):
    """The first `n_docs` non-empty lines of `path` of at most `max_chars` characters (one document per line)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            text = line.rstrip("\n")
            if text.strip() and len(text) <= max_chars:
                out.append(text)
                if len(out) == n_docs:
                    break
    if not out:
        raise ValueError(f"{path}: no document of at most {max_chars} characters")
    return out


def across_lms(models, valid, out_dir, tasks=("sst2",), data_dir=None, max_train=2000, max_test=None, n_docs=200,
               seed=0, dtype=None, log=print, command=None):
    """Bits per byte and f / phi_p probe accuracy of each model; returns the result dict (also written)."""
    if len(models) < 2:
        raise ValueError("--across-lms needs at least two models to compare")
    tasks = [resolve_task(t) for t in tasks]
    docs = held_out_texts(valid, n_docs)
    splits = {}
    for task in tasks:
        tr, y_tr, _ = load_texts(task, "train", data_dir)
        te, y_te, _ = load_texts(task, "test", data_dir)
        splits[task.name] = (subsample(tr, y_tr, max_train, seed), subsample(te, y_te, max_test, seed))
    rows = []
    settings = {"valid": os.path.abspath(valid), "n_docs": len(docs), "tasks": [t.name for t in tasks],
                "max_train": max_train, "max_test": max_test, "seed": seed, "dtype": dtype}
    for spec in models:
        done_path = os.path.join(out_dir, "models", "".join(c if c.isalnum() or c in "-_." else "_" for c in spec) + ".json")
        done = read_json(done_path)
        if done is not None and done.get("settings") == settings:
            log(f"{spec}: done earlier ({done_path})")
            rows.append(done["row"])
            continue
        t0 = time.time()
        lm = resolve_lm(spec, dtype)
        row = {"model": spec, "name": lm.name, "parameters": lm.num_parameters, "d": lm.hidden_dim,
               "V": lm.vocabulary_size, "tokenizer": lm.tokenizer.name, **bits_per_byte(lm, docs), "accuracy": {}}
        log(f"{spec}: {row['bits_per_byte']:.3f} bits/byte on {len(docs)} held-out documents")
        sf = SentenceFeatures(lm, progress=False)
        for task in tasks:
            (tr, y_tr, _), (te, y_te, _) = splits[task.name]
            f_tr, f_te = sf.f(tr), sf.f(te)
            feats = {"f": (f_tr, f_te), "phi_p": (sf.derive(f_tr, ["phi_p"])["phi_p"], sf.derive(f_te, ["phi_p"])["phi_p"])}
            row["accuracy"][task.name] = {}
            for name in FEATURES:
                acc = logistic_probe(feats[name][0], y_tr, feats[name][1], y_te)["test_accuracy"]
                row["accuracy"][task.name][name] = acc
                log(f"  {task.name} {name}: {100 * acc:.1f}%")
        row["seconds"] = round(time.time() - t0, 1)
        write_json(done_path, {"settings": settings, "row": row})  # a rerun resumes after this model
        rows.append(row)
    result = {"command": command, "valid": os.path.basename(valid), "n_docs": len(docs), "dtype": dtype,
              "tasks": {t.name: {"train": len(splits[t.name][0][0]), "test": len(splits[t.name][1][0])} for t in tasks},
              "seed": seed, "models": rows, "machine": machine_info(), "caveat": CAVEAT}
    os.makedirs(out_dir, exist_ok=True)
    result["plot"] = plot_accuracy_vs_bits(rows, [t.name for t in tasks], os.path.join(out_dir, "accuracy_vs_bits_per_byte.png"))
    write_json(os.path.join(out_dir, "results.json"), result)
    write_atomic(os.path.join(out_dir, "across_lms.md"), markdown(result))
    return result


def markdown(result):
    tasks = list(result["tasks"])
    header = ["model", "parameters", "V", "bits / byte", "nats / token"] + [f"{t} {n}" for t in tasks for n in FEATURES]
    body = [[r["name"], f"{r['parameters']:,}", f"{r['V']:,}", f"{r['bits_per_byte']:.3f}", f"{r['nats_per_token']:.3f}"]
            + [fmt(r["accuracy"][t][n]) for t in tasks for n in FEATURES] for r in result["models"]]
    sizes = ", ".join(f"{t} train {v['train']:,} / test {v['test']:,}" for t, v in result["tasks"].items())
    return "\n".join([
        "# Probe accuracy vs LM cross-entropy across LMs", "",
        f"Bits per byte on the first {result['n_docs']} documents of `{result['valid']}` (each scored after the "
        f"model's start token); probe test accuracy (%) of the paper's protocol on f and Phi p_f, no prompt "
        f"({sizes}, seeded subsamples, seed {result['seed']}; dtype {result['dtype'] or 'float32'}).", "",
        markdown_table(header, body), "",
        f"![accuracy vs bits per byte]({os.path.basename(result['plot'])})", "",
        result["caveat"], "",
        *([f"Command: `{result['command']}`", ""] if result.get("command") else []),
        f"Machine: {machine_line(result['machine'])}.", ""])



def plot_accuracy_vs_bits(rows, tasks, path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot(111)
    colours = ["C0", "C1", "C2", "C3"]
    for k, task in enumerate(tasks):
        for name, marker in (("f", "o"), ("phi_p", "s")):
            xs = [r["bits_per_byte"] for r in rows]
            ys = [100 * r["accuracy"][task][name] for r in rows]
            ax.plot(xs, ys, marker, color=colours[k % 4], mfc="none" if name == "phi_p" else colours[k % 4],
                    label=f"{task} {name}")
    for r in rows:
        ax.annotate(r["name"], (r["bits_per_byte"], 100 * r["accuracy"][tasks[0]]["f"]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    ax.invert_xaxis()  # better language models to the right
    ax.set_xlabel("held-out cross-entropy (bits per byte; lower is better)")
    ax.set_ylabel("probe test accuracy (%)")
    ax.set_title("Probe accuracy vs LM cross-entropy across LMs", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)

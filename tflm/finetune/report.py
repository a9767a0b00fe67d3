"""Fine-tuning grid reports: results.json, results.md (a table), dev_accuracy.png."""

import os

from tflm.atomic import save_figure, write_atomic
from tflm.report import write_json


def _pct(x):
    return "-" if x is None else f"{100 * x:.2f}"


def markdown(report):
    sel = report["selected"]
    lines = [
        f"# Fine-tuning {report['model']} on {report['task']}" + (" (prompt)" if report.get("prompt") else ""),
        "",
        f"- prompt: {report['prompt']!r}",
        f"- splits: {report['splits']}; sizes {report['sizes']}",
        f"- grid: lrs {report['lrs']} x global batch sizes {report['batch_sizes']} "
        f"({report['batch_size_semantics']}), {report['epochs']} epochs"
        + (f", early stop patience {report['early_stop']}" if report.get("early_stop") else ""),
        f"- replicas: {report['replicas']}; seed {report['seed']}; head dropout {report['dropout']}",
        f"- selection: {report['selection']}",
        f"- **selected: {sel['run']} (epoch {sel['best_epoch']}): dev {_pct(sel['dev_accuracy'])}%, "
        f"test {_pct(sel['test_accuracy'])}%**",
        "",
        "| run | lr | batch | best epoch | epochs run | dev acc % | test acc % | dev acc per epoch % |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["runs"]:
        mark = "**" if r["run"] == sel["run"] else ""
        curve = " ".join(_pct(v) for v in r["history"].get("val_accuracy", []))
        lines.append(
            f"| {mark}{r['run']}{mark} | {r['lr']:g} | {r['batch_size']} | {r['best_epoch']} | "
            f"{r['epochs_run']}{' (early stop)' if r['stopped_early'] else ''} | {_pct(r['dev_accuracy'])} | "
            f"{_pct(r['test_accuracy'])} | {curve} |"
        )
    return "\n".join(lines) + "\n"


def plot_dev_accuracy(report, path):
    """Dev accuracy per epoch, one line per configuration (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in report["runs"]:
        ys = [100 * v for v in r["history"].get("val_accuracy", [])]
        style = "-" if r["run"] == report["selected"]["run"] else "--"
        ax.plot(range(1, len(ys) + 1), ys, style, marker="o", ms=3, label=f"lr {r['lr']:g}, batch {r['batch_size']}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("dev accuracy (%)")
    ax.set_title(f"{report['task']}: {report['model']}" + (" (prompt)" if report.get("prompt") else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


# What differs between two runs of the same grid that trained the same: times, and what a run may lack.
RUN_SPECIFIC_KEYS = ("wall_time_s", "selected_model", "export_dir")


def comparable(obj):
    """`obj` (a report, or a part of one) without `RUN_SPECIFIC_KEYS`: equal for runs that trained the same."""
    if isinstance(obj, dict):
        return {k: comparable(v) for k, v in obj.items() if k not in RUN_SPECIFIC_KEYS}
    if isinstance(obj, list):
        return [comparable(v) for v in obj]
    return obj


def write_report(report, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    write_atomic(os.path.join(out_dir, "results.md"), markdown(report))
    plot_dev_accuracy(report, os.path.join(out_dir, "dev_accuracy.png"))
    write_json(os.path.join(out_dir, "results.json"), report)

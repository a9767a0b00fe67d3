"""Result tables and files shared by all jobs: JSON, Markdown, terminal text, PNG."""

import json
import os
import platform

import numpy as np

from tflm.atomic import save_figure, write_atomic


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


def write_json(path, obj):
    write_atomic(path, json.dumps(_jsonable(obj), indent=1) + "\n")


def machine_line(mi):
    """One line describing the machine of a `machine_info()` dict (for the Machine section of a report)."""
    return (f"{mi['platform']}, {mi['cpus']} CPUs, GPUs: {mi['gpus'] or 'none'}, Python {mi['python']}, "
            f"TensorFlow {mi['tensorflow']}")


def fmt(v, pct=True):
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    return f"{100 * v:.1f}" if pct else f"{v:.4g}"


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def text_table(header, rows):
    cols = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(header))]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cols[1:]]
    return "\n".join(out)


def machine_info():
    import tensorflow as tf

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
    }


def bar_chart(path, groups, series, values, title, ylabel="test accuracy (%)", chance=None):
    """Grouped bars: `values[s][g]` for series s over groups g (None = missing)."""
    return bar_panels(path, [{"title": title, "groups": groups, "series": series, "values": values,
                              "chance": chance}], ylabel)


def bar_panels(path, panels, ylabel="test accuracy (%)"):
    """Grouped bar charts stacked top to bottom in one PNG.

    Each panel: {"title", "groups", "series", "values": {series: [value per group or None]}, optional
    "chance" (a dashed majority-class line) and "height" (relative, default 1)}.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    def width_of(p):
        return max(6, 1.2 * len(p["groups"]) * max(1, len(p["series"])) / 2 + 2)

    heights = [p.get("height", 1.0) for p in panels]
    colours = {}  # one colour per series name across all panels
    for p in panels:
        for s in p["series"]:
            colours.setdefault(s, f"C{len(colours) % 10}")
    fig = Figure(figsize=(max(width_of(p) for p in panels), 4 * sum(heights)))
    grid = fig.add_gridspec(len(panels), 1, height_ratios=heights)
    for k, p in enumerate(panels):
        ax = fig.add_subplot(grid[k])
        small = p.get("height", 1.0) < 1  # a smaller panel gets smaller type
        series, groups = p["series"], p["groups"]
        width = 0.8 / max(1, len(series))
        x = np.arange(len(groups))
        for i, s in enumerate(series):
            vals = [np.nan if p["values"][s][g] is None else 100 * p["values"][s][g] for g in range(len(groups))]
            bars = ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=s, color=colours[s])
            for b, v in zip(bars, vals):
                if np.isfinite(v):
                    ax.text(b.get_x() + b.get_width() / 2, v + 0.5, f"{v:.0f}", ha="center", fontsize=7)
        if p.get("chance") is not None:
            ax.axhline(100 * p["chance"], color="gray", ls="--", lw=1, label="majority class")
        ax.set_xticks(x)
        ax.set_xticklabels(groups, fontsize=8 if small else 9)
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, 125)
        ax.set_title(p["title"], fontsize=10 if small else 12)
        ax.legend(fontsize=7 if small else 8, ncol=min(8, len(series) + 1), loc="upper center")
    fig.tight_layout()
    return save_figure(fig, path, dpi=fig.dpi)

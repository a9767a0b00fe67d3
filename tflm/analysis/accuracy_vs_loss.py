"""Downstream probe accuracy vs LM validation cross-entropy across checkpoints.

The main theorem bounds the downstream loss by tau + sqrt(2 B^2 eps / gamma),
eps the LM's excess cross-entropy. Plotting accuracy against validation
cross-entropy for checkpoints of ONE architecture shows whether accuracy
improves as the loss falls; the dashed curve acc ~ a - c sqrt(loss - loss_min)
is that bound's shape fitted to the points, drawn as a reference shape only.
Mixing architectures would confound loss with capacity, so it is refused.
"""

import json
from dataclasses import dataclass, field

import numpy as np

from tflm.atomic import save_figure

__all__ = ["CheckpointRecord", "check_same_architecture", "fit_reference_curve",
           "plot_accuracy_vs_loss"]

CAPTION = ("Dashed: reference shape acc = a - c*sqrt(loss - loss_min) (the theorem's "
           "sqrt(excess loss) form), least-squares fitted to these points; a reference "
           "shape, not a claim that the theory predicts these values.")


@dataclass
class CheckpointRecord:
    name: str
    architecture: dict
    val_xent: float
    probe_accuracy: float
    extra: dict = field(default_factory=dict)

    @classmethod
    def coerce(cls, record):
        if isinstance(record, cls):
            return record
        if isinstance(record, dict):
            missing = [k for k in ("name", "architecture", "val_xent", "probe_accuracy") if k not in record]
            if missing:
                raise ValueError(f"checkpoint record {record.get('name', record)!r} lacks {missing}")
            extra = {k: v for k, v in record.items()
                     if k not in ("name", "architecture", "val_xent", "probe_accuracy")}
            return cls(str(record["name"]), dict(record["architecture"]), float(record["val_xent"]),
                       float(record["probe_accuracy"]), extra)
        raise TypeError(f"expected a CheckpointRecord or dict, got {type(record).__name__}")


def _signature_key(arch):
    return json.dumps(arch, sort_keys=True, default=str)


def check_same_architecture(records):
    """Return the shared architecture dict; ValueError naming mismatching checkpoints otherwise.

    The reference is the most common signature (ties: the first record's).
    """
    records = [CheckpointRecord.coerce(r) for r in records]
    if not records:
        raise ValueError("no checkpoint records given")
    groups = {}
    for r in records:
        groups.setdefault(_signature_key(r.architecture), []).append(r)
    if len(groups) == 1:
        return dict(records[0].architecture)
    ref_key = max(groups, key=lambda k: (len(groups[k]), -records.index(groups[k][0])))
    ref = groups[ref_key][0].architecture
    lines = []
    for key, members in groups.items():
        if key == ref_key:
            continue
        arch = members[0].architecture
        diff = {k: (ref.get(k, "<missing>"), arch.get(k, "<missing>"))
                for k in sorted(set(ref) | set(arch)) if ref.get(k, "<missing>") != arch.get(k, "<missing>")}
        diff_txt = ", ".join(f"{k}: {a!r} vs {b!r}" for k, (a, b) in diff.items())
        lines.append(f"{[m.name for m in members]} differ from {[m.name for m in groups[ref_key]]} in {diff_txt}")
    raise ValueError("checkpoints do not share one architecture; accuracy vs loss is only "
                     "comparable within one architecture: " + "; ".join(lines))


def fit_reference_curve(losses, accuracies, loss_min=None, n_grid=200):
    """Least-squares a, c >= 0 (and loss_min unless given) for acc ~ a - c sqrt(loss - loss_min).

    loss_min is searched on a grid in [0, min(losses)] (a cross-entropy is
    never negative). Returns dict a, c, loss_min, sse.
    """
    x = np.asarray(losses, dtype=np.float64)
    y = np.asarray(accuracies, dtype=np.float64)
    if len(x) != len(y) or len(x) < 2:
        raise ValueError("need at least two (loss, accuracy) points of equal count")
    lo = float(x.min())
    if loss_min is not None:
        if loss_min > lo:
            raise ValueError(f"loss_min={loss_min} exceeds the smallest loss {lo}")
        candidates = [float(loss_min)]
    else:
        span = max(float(x.max() - lo), 1e-6)
        candidates = lo - span * np.concatenate([[0.0], np.geomspace(1e-3, 10.0, n_grid - 1)])
        candidates = candidates[candidates >= 0.0] if lo > 0 else candidates
    best = None
    for m in candidates:
        s = np.sqrt(np.maximum(x - m, 0.0))
        X = np.stack([np.ones_like(s), -s], axis=1)
        (a, c), *_ = np.linalg.lstsq(X, y, rcond=None)
        if c < 0:
            a, c = float(y.mean()), 0.0
        sse = float(np.sum((a - c * s - y) ** 2))
        if best is None or sse < best["sse"]:
            best = {"a": float(a), "c": float(c), "loss_min": float(m), "sse": sse}
    return best


def plot_accuracy_vs_loss(records, path, title=None, loss_min=None, dpi=120):
    """Validate one architecture, then write a PNG of accuracy vs validation cross-entropy.

    Returns dict: path, architecture, reference curve (a, c, loss_min, sse), caption.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = [CheckpointRecord.coerce(r) for r in records]
    arch = check_same_architecture(records)
    x = np.array([r.val_xent for r in records])
    y = np.array([r.probe_accuracy for r in records])
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("validation cross-entropies and accuracies must be finite")
    ref = fit_reference_curve(x, y, loss_min=loss_min) if len(records) >= 2 else None

    fig = Figure(figsize=(7, 5.5))
    FigureCanvasAgg(fig)
    ax = fig.add_axes([0.12, 0.2, 0.83, 0.72])
    ax.scatter(x, y, s=30, zorder=3, label="checkpoints")
    for r in records:
        ax.annotate(r.name, (r.val_xent, r.probe_accuracy), textcoords="offset points",
                    xytext=(4, 4), fontsize=7)
    if ref is not None:
        pad = 0.1 * max(np.ptp(x), 1e-6)
        grid = np.linspace(max(ref["loss_min"], x.min() - pad), x.max() + pad, 200)
        ax.plot(grid, np.clip(ref["a"] - ref["c"] * np.sqrt(grid - ref["loss_min"]), 0.0, 1.0), "k--", lw=1,
                label=f"reference shape a - c sqrt(loss - {ref['loss_min']:.3g})")
    ax.set_xlabel("LM validation cross-entropy (nats / token)")
    ax.invert_xaxis()  # better language models to the right
    ax.set_ylabel("linear probe test accuracy")
    arch_txt = ", ".join(f"{k}={v}" for k, v in sorted(arch.items()))
    ax.set_title(title or f"Probe accuracy vs LM loss ({arch_txt})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.text(0.02, 0.02, CAPTION, fontsize=7, wrap=True, ha="left", va="bottom")
    save_figure(fig, path, dpi=dpi)
    return {"path": path, "architecture": arch, "reference_curve": ref, "caption": CAPTION}

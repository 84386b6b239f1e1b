"""Small PNG diagnostics for model cards and run folders: per-class accuracy, per-class training progress.

What the paper's analysis says to look at (Ye, Zhan, Chao, ICCV 2021): without weakening, minor
classes are under-fitted early (training accuracy near 0) while major classes are fitted first; with
weakening the per-class training curves rise together. Classes are coloured by training-set size
(one colour map, small = dark blue, large = yellow), so the major/minor split shows at a glance.

Figures are drawn on matplotlib's ``Figure`` with the Agg canvas directly: no pyplot, no global
backend switch, safe in headless training jobs and in notebooks alike. 6 x 4 in at 100 dpi.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

PathLike = Union[str, "os.PathLike[str]"]
FIGSIZE = (6.0, 4.0)
DPI = 100
CMAP = "viridis"

__all__ = ["plot_per_class_accuracy", "plot_training_progress"]


def _new_figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=DPI)
    return path


def _size_colours(class_counts: Optional[Sequence[int]], num_classes: int):
    """One colour per class: by log training count when counts are known, else by class id."""
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm, Normalize

    if class_counts is None:
        cmap = colormaps["tab10" if num_classes <= 10 else "tab20"]
        return [cmap(c % cmap.N) for c in range(num_classes)], None
    counts = [max(int(n), 1) for n in class_counts]
    lo, hi = min(counts), max(counts)
    norm = LogNorm(lo, hi) if hi > lo else Normalize(lo - 1, hi + 1)
    cmap = colormaps[CMAP]
    return [cmap(norm(n)) for n in counts], (cmap, norm)


def _nan(values: Sequence[Any]) -> list:
    return [math.nan if v is None else float(v) for v in values]


def _class_ticks(ax, names: Sequence[str]) -> None:
    n = len(names)
    step = max(1, math.ceil(n / 20))
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks)
    labels = [str(names[i])[:12] for i in ticks]
    rotate = n > 6 or max((len(s) for s in labels), default=0) > 6
    ax.set_xticklabels(labels, rotation=45 if rotate else 0, ha="right" if rotate else "center", fontsize=8)


def plot_per_class_accuracy(per_class_accuracy: Sequence[Optional[float]], class_names: Sequence[str],
                            class_counts: Sequence[int], path: PathLike,
                            title: str = "Per-class accuracy") -> Path:
    """Bar per class (in the given order), coloured by training count, count written above the bar.

    ``None`` accuracies (classes without evaluation images) are left out of the bars and of the
    class-averaged line. Accuracies are fractions in [0, 1]. Returns ``path``.
    """
    acc = _nan(per_class_accuracy)
    if not len(acc) == len(class_names) == len(class_counts):
        raise ValueError(f"per_class_accuracy ({len(acc)}), class_names ({len(class_names)}) and class_counts "
                         f"({len(class_counts)}) must have one entry per class.")
    colours, _ = _size_colours(class_counts, len(acc))
    fig = _new_figure()
    ax = fig.add_subplot()
    xs = range(len(acc))
    ax.bar(xs, [0.0 if math.isnan(a) else a for a in acc], color=colours, edgecolor="black", linewidth=0.3)
    present = [a for a in acc if not math.isnan(a)]
    if present:
        mean = sum(present) / len(present)
        ax.axhline(mean, color="crimson", linestyle="--", linewidth=1.2, label=f"class-averaged {100 * mean:.1f}%")
        ax.legend(loc="upper right", fontsize=8)
    if len(acc) <= 30:
        for x, (a, n) in enumerate(zip(acc, class_counts)):
            text = f"{int(n)}" if not math.isnan(a) else f"{int(n)}\nn/a"
            ax.text(x, (0 if math.isnan(a) else a) + 0.01, text, ha="center", va="bottom", fontsize=6)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("accuracy")
    ax.set_xlim(-0.6, len(acc) - 0.4)
    _class_ticks(ax, class_names)
    ax.set_title(f"{title} (numbers: training images)", fontsize=10)
    return _save(fig, path)


def plot_training_progress(history: Sequence[Mapping[str, Any]], class_names: Sequence[str], path: PathLike,
                           class_counts: Optional[Sequence[int]] = None,
                           title: str = "Per-class training accuracy") -> Path:
    """One line per class: training accuracy vs epoch (solid), evaluation accuracy when logged (dashed).

    ``history``: per-epoch dicts ``{"epoch": e, "train_per_class_accuracy": [...],
    "eval_per_class_accuracy": [...]}`` (eval optional, ``None`` entries allowed). With
    ``class_counts``, colours follow class size (colour bar); otherwise the class id.
    """
    num_classes = len(class_names)
    rows = [h for h in history if h.get("train_per_class_accuracy") is not None]
    if not rows:
        raise ValueError("history has no 'train_per_class_accuracy' entry; log one list per epoch, e.g. "
                         "{'epoch': 0, 'train_per_class_accuracy': [...]}.")
    for h in rows:
        for key in ("train_per_class_accuracy", "eval_per_class_accuracy"):
            if h.get(key) is not None and len(h[key]) != num_classes:
                raise ValueError(f"history epoch {h.get('epoch')}: {key} has {len(h[key])} values for "
                                 f"{num_classes} classes.")
    if class_counts is not None and len(class_counts) != num_classes:
        raise ValueError(f"class_counts has {len(class_counts)} values for {num_classes} classes.")
    epochs = [h.get("epoch", i) for i, h in enumerate(rows)]
    colours, scale = _size_colours(class_counts, num_classes)
    fig = _new_figure()
    ax = fig.add_subplot()
    has_eval = any(h.get("eval_per_class_accuracy") is not None for h in rows)
    marker = "o" if len(rows) < 3 else None  # a single epoch is a point, not a line
    for c in range(num_classes):
        label = str(class_names[c]) if num_classes <= 10 and scale is None else None
        ax.plot(epochs, [_nan([h["train_per_class_accuracy"][c]])[0] for h in rows], color=colours[c],
                linewidth=1.2, label=label, marker=marker, markersize=3)
        if has_eval:
            ev = [_nan([h["eval_per_class_accuracy"][c]])[0] if h.get("eval_per_class_accuracy") is not None
                  else math.nan for h in rows]
            ax.plot(epochs, ev, color=colours[c], linewidth=0.9, linestyle="--", marker=marker, markersize=3)
    if scale is not None:
        from matplotlib.cm import ScalarMappable

        cmap, norm = scale
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.02)
        bar.set_label("training images", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    elif num_classes <= 10:
        ax.legend(loc="lower right", fontsize=7, ncol=2)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_title(title + (" (dashed: evaluation)" if has_eval else ""), fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)

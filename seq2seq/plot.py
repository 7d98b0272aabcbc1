"""Figures: attention heatmaps (which source subwords each target subword looked at) and the
learning curves of several runs (validation BLEU and loss against minutes and updates)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

EOS_LABEL = "</s>"


def attention_figure(
    attention: Sequence[Sequence[float]] | np.ndarray,
    source_tokens: list[str],
    target_tokens: list[str],
    title: str | None = None,
) -> Figure:
    """A heatmap of ``attention`` (len(target) + 1, len(source) + 1): rows are target pieces,
    columns source pieces, each with the EOS step or token last."""
    weights = np.asarray(attention, dtype=np.float32)
    rows, cols = len(target_tokens) + 1, len(source_tokens) + 1
    if weights.shape != (rows, cols):
        raise ValueError(f"attention has shape {weights.shape}, expected ({rows}, {cols}) for these tokens")
    # A figure object without pyplot: no global backend state, safe in servers and threads.
    fig = Figure(figsize=(min(2.0 + 0.35 * cols, 40.0), min(1.5 + 0.3 * rows, 40.0)), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(cols), [*source_tokens, EOS_LABEL], rotation=90)
    ax.set_yticks(range(rows), [*target_tokens, EOS_LABEL])
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.03)
    return fig


def plot_attention(
    attention: Sequence[Sequence[float]] | np.ndarray,
    source_tokens: list[str],
    target_tokens: list[str],
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Write ``attention_figure`` as a PNG file; returns the path."""
    path = Path(path)
    attention_figure(attention, source_tokens, target_tokens, title).savefig(path, format="png", dpi=100)
    return path


FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


def plot_runs(runs: list, path: str | Path) -> Path:
    """Validation BLEU and loss of ``runs`` (``seq2seq.runs.Run``) against training minutes and updates,
    one color per run, training loss dashed; PNG, SVG or PDF by the file's suffix."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot write {path}: the suffix must be one of {', '.join(FORMATS)}")
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    for i, run in enumerate(runs):
        color = f"C{i % 10}"
        minutes = [v["minutes"] for v in run.val]
        steps = [v["step"] + 1 for v in run.val]  # updates done when the validation ran
        for col, x in enumerate((minutes, steps)):
            axes[0, col].plot(x, [v["bleu"] for v in run.val], "o-", color=color, ms=3, label=run.name)
            axes[1, col].plot(x, [v["loss"] for v in run.val], "o-", color=color, ms=3)
        if run.train:
            train_steps = [t["step"] + 1 for t in run.train]
            axes[1, 1].plot(train_steps, [t["loss"] for t in run.train], "--", color=color, lw=0.8, alpha=0.7)
    for col, xlabel in enumerate(("training minutes", "updates")):
        axes[0, col].set_ylabel("validation BLEU")
        axes[1, col].set_ylabel("loss (validation; training dashed)" if col else "validation loss")
        for row in range(2):
            axes[row, col].set_xlabel(xlabel)
            axes[row, col].grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.savefig(path, format=fmt, dpi=100)
    return path

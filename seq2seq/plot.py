"""Attention heatmaps: which source subwords each target subword looked at."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

EOS_LABEL = "</s>"


def plot_attention(
    attention: Sequence[Sequence[float]] | np.ndarray,
    source_tokens: list[str],
    target_tokens: list[str],
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Write a PNG heatmap of ``attention`` (len(target) + 1, len(source) + 1): rows are target
    pieces, columns source pieces, each with the EOS step or token last. Returns the path."""
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
    path = Path(path)
    fig.savefig(path, format="png", dpi=100)
    return path

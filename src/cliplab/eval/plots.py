"""PNG figures of a training run. Each function draws one figure from plain data and writes it.

Figures are built with `matplotlib.figure.Figure` and its Agg canvas directly, never pyplot: no
global backend switch, no window, nothing kept alive between calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 110


def plot_series(
    path: Path,
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    ylabel: str,
    log_y: bool = False,
    xlabel: str = "step",
) -> Path:
    """Line plot of named (x, y) series on one axis; writes `path` (PNG) and returns it."""
    if not series:
        raise ValueError(f"plot_series({title!r}) got no series to draw")
    figure = _figure(7.0, 4.0)
    axis = figure.add_subplot()
    for name, (xs, ys) in series.items():
        marker = "o" if len(xs) <= 30 else None
        axis.plot(xs, ys, label=name, marker=marker, markersize=3, linewidth=1.4)
    if log_y and all(value > 0 for _, ys in series.values() for value in ys):
        axis.set_yscale("log")
    axis.set_title(title)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.grid(True, alpha=0.3)
    if len(series) > 1:
        axis.legend(fontsize=8)
    return _save(figure, path)


def plot_confusion_matrix(path: Path, confusion: np.ndarray, classnames: Sequence[str], title: str) -> Path:
    """Heatmap of confusion [C, C] ints (row = true, column = predicted), rows normalised to recall,
    with the counts written in the cells; writes `path` (PNG)."""
    confusion = np.asarray(confusion, dtype=np.int64)
    count = len(classnames)
    if confusion.shape != (count, count):
        raise ValueError(f"confusion must be [{count}, {count}] for {count} classnames, got {confusion.shape}")
    row_totals = confusion.sum(axis=1, keepdims=True)
    recall = confusion / np.maximum(row_totals, 1)
    side = max(5.0, 0.55 * count + 2.5)
    figure = _figure(side + 1.0, side)
    axis = figure.add_subplot()
    image = axis.imshow(recall, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="fraction of the true class")
    axis.set_xticks(range(count), labels=classnames, rotation=45, ha="right", fontsize=8)
    axis.set_yticks(range(count), labels=classnames, fontsize=8)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    axis.set_title(title)
    for row in range(count):
        for column in range(count):
            color = "white" if recall[row, column] > 0.5 else "black"
            axis.text(column, row, str(confusion[row, column]), ha="center", va="center", fontsize=7, color=color)
    return _save(figure, path)


def plot_similarity_matrix(
    path: Path,
    similarity: np.ndarray,
    images: Sequence[np.ndarray],
    texts: Sequence[str],
    title: str,
) -> Path:
    """Cosine similarity [N_text, N_image] as a heatmap, with the N images shown above their columns
    and the texts labelling the rows; images: N arrays [H, W, 3] uint8 (or [H, W]); writes `path`."""
    similarity = np.asarray(similarity, dtype=np.float64)
    if similarity.shape != (len(texts), len(images)):
        raise ValueError(f"similarity must be [{len(texts)}, {len(images)}] (texts x images), got {similarity.shape}")
    count = len(images)
    width = max(6.0, 0.8 * count + 4.0)
    figure = _figure(width, width * 0.9)
    grid = figure.add_gridspec(2, count, height_ratios=(1, count), hspace=0.05, wspace=0.05)
    for column, image in enumerate(images):
        thumbnail = figure.add_subplot(grid[0, column])
        thumbnail.imshow(image, cmap="gray" if np.ndim(image) == 2 else None)
        thumbnail.axis("off")
    axis = figure.add_subplot(grid[1, :])
    heatmap = axis.imshow(similarity, cmap="viridis", aspect="auto")
    figure.colorbar(heatmap, ax=axis, fraction=0.03, pad=0.02, label="cosine similarity")
    axis.set_xticks(range(count), labels=[str(index) for index in range(count)], fontsize=8)
    axis.set_yticks(range(len(texts)), labels=list(texts), fontsize=8)
    axis.set_xlabel("image")
    for row in range(similarity.shape[0]):
        for column in range(count):
            axis.text(column, row, f"{similarity[row, column]:.2f}", ha="center", va="center", fontsize=6,
                      color="white")
    figure.suptitle(title)
    return _save(figure, path)


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", bbox_inches="tight")
    return path

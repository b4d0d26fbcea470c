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
LOG_SCALE_SPREAD = 10.0
LABEL_CHARS = 48


def series_figure(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    ylabel: str,
    log_y: bool = False,
    xlabel: str = "step",
    y_limits: tuple[float, float] | None = None,
) -> Figure:
    """Line plot of named (x, y) series on one axis, each named in the legend; y_limits fixes the y
    axis (e.g. (0, 1) for a fraction), else it fits the data; log_y draws a logarithmic y axis where
    the values span more than a factor LOG_SCALE_SPREAD (below that, log ticks say less)."""
    if not series:
        raise ValueError(f"series_figure({title!r}) got no series to draw")
    figure = _figure(7.0, 4.0)
    axis = figure.add_subplot()
    for name, (xs, ys) in series.items():
        marker = "o" if len(xs) <= 30 else None
        axis.plot(xs, ys, label=name, marker=marker, markersize=3, linewidth=1.4)
    values = [value for _, ys in series.values() for value in ys]
    if log_y and min(values) > 0 and max(values) > LOG_SCALE_SPREAD * min(values):
        axis.set_yscale("log")
    if y_limits is not None:
        axis.set_ylim(*y_limits)
    axis.set_title(title)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    return figure


def bar_figure(values: Mapping[str, float], title: str, ylabel: str,
               y_limits: tuple[float, float] | None = None) -> Figure:
    """One bar per named value, its value written above it: for a metric measured once (a single
    evaluation), where a line plot would be lone dots."""
    if not values:
        raise ValueError(f"bar_figure({title!r}) got no values to draw")
    figure = _figure(max(5.0, 0.9 * len(values) + 2.0), 4.0)
    axis = figure.add_subplot()
    names = list(values)
    bars = axis.bar(range(len(names)), [values[name] for name in names], color="tab:blue", width=0.6)
    axis.bar_label(bars, labels=[f"{values[name]:.3g}" for name in names], fontsize=8, padding=2)
    axis.set_xticks(range(len(names)), labels=names, rotation=20, ha="right", fontsize=8)
    if y_limits is not None:
        axis.set_ylim(*y_limits)
    axis.set_title(title)
    axis.set_ylabel(ylabel)
    axis.grid(True, axis="y", alpha=0.3)
    return figure


def grouped_bar_figure(table: Mapping[str, Mapping[str, float]], title: str, ylabel: str,
                       y_limits: tuple[float, float] | None = None) -> Figure:
    """Bars in groups: table[group][series] -> value; one group per key along x (e.g. datasets),
    one coloured bar per series within it (e.g. models), named in the legend."""
    if not table:
        raise ValueError(f"grouped_bar_figure({title!r}) got no values to draw")
    groups = list(table)
    series = list(dict.fromkeys(name for values in table.values() for name in values))
    width = 0.8 / len(series)
    figure = _figure(max(5.0, 0.6 * len(groups) * len(series) + 2.5), 4.0)
    axis = figure.add_subplot()
    for position, name in enumerate(series):
        xs = [index + (position - (len(series) - 1) / 2) * width for index, group in enumerate(groups)
              if name in table[group]]
        values = [table[group][name] for group in groups if name in table[group]]
        bars = axis.bar(xs, values, width=width, label=shortened(name))
        axis.bar_label(bars, labels=[f"{value:.3g}" for value in values], fontsize=7, padding=2)
    axis.set_xticks(range(len(groups)), labels=[shortened(group) for group in groups], rotation=20, ha="right",
                    fontsize=8)
    if y_limits is not None:
        axis.set_ylim(*y_limits)
    axis.set_title(title)
    axis.set_ylabel(ylabel)
    axis.grid(True, axis="y", alpha=0.3)
    axis.legend(fontsize=8)
    return figure


def plot_series(path: Path, series: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str, ylabel: str,
                log_y: bool = False, xlabel: str = "step", y_limits: tuple[float, float] | None = None) -> Path:
    """`series_figure(...)` written to `path` (PNG); returns the path."""
    return save_figure(series_figure(series, title, ylabel, log_y=log_y, xlabel=xlabel, y_limits=y_limits), path)


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
    return save_figure(figure, path)


def plot_similarity_matrix(
    path: Path,
    similarity: np.ndarray,
    images: Sequence[np.ndarray],
    texts: Sequence[str],
    title: str,
) -> Path:
    """Cosine similarity [N_text, N_image] as a heatmap, with the N images shown above their columns
    and the texts labelling the rows (text i is numbered i, as its image: the pairs lie on the
    diagonal; long texts shortened to LABEL_CHARS); images: N arrays [H, W, 3] uint8 (or [H, W]);
    writes `path`."""
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
    axis.set_yticks(range(len(texts)), labels=[f"{index}: {shortened(text)}" for index, text in enumerate(texts)],
                    fontsize=8)
    axis.set_xlabel("image")
    for row in range(similarity.shape[0]):
        for column in range(count):
            axis.text(column, row, f"{similarity[row, column]:.2f}", ha="center", va="center", fontsize=6,
                      color="white")
    figure.suptitle(title)
    return save_figure(figure, path)


def shortened(text: str, limit: int = LABEL_CHARS) -> str:
    """`text`, cut to `limit` characters with an ellipsis when longer."""
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: Path) -> Path:
    """Write `figure` as a PNG to `path` (parent directories created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", bbox_inches="tight")
    return path

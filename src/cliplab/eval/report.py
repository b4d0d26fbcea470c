"""A training run's report: figures from `metrics.jsonl` and a `report.md` that links them.

metrics.jsonl holds one JSON object per line with "kind": "train" (step, lr, loss, "loss/<term>",
logit_scale, i2t_accuracy, t2i_accuracy, ...) or "eval" (step, zero_shot_top1/top5,
confusion_matrix, classnames, retrieval keys such as "image_to_text_R@1").
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from cliplab.errors import InvalidInputError, MissingInputError
from cliplab.eval.chance import in_batch_sentence, retrieval_sentence, zero_shot_sentence
from cliplab.eval.plots import bar_figure, plot_confusion_matrix, save_figure, series_figure
from cliplab.eval.run_layout import SUMMARY_FILE

RETRIEVAL_PLOT_KEYS = ("image_to_text_R@1", "text_to_image_R@1", "image_to_text_R@5", "text_to_image_R@5",
                       "image_to_text_R@10", "text_to_image_R@10")


@dataclass(frozen=True)
class RunMetrics:
    """The records of metrics.jsonl split by kind, each list in file order."""

    train: tuple[dict[str, Any], ...]
    evals: tuple[dict[str, Any], ...]


def read_metrics(path: str | Path) -> RunMetrics:
    """Parse metrics.jsonl. A truncated last line (the writer was killed mid-line) is skipped with a
    warning; a malformed line elsewhere raises ValueError naming the line."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path} does not exist: the run has logged no metrics")
    lines = path.read_text(encoding="utf-8").splitlines()
    train, evals = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines):
                warnings.warn(f"{path} line {number} is truncated and was skipped ({error})", stacklevel=2)
                continue
            raise InvalidInputError(f"{path} line {number} is not valid JSON ({error})") from None
        if not isinstance(record, dict):
            raise InvalidInputError(f"{path} line {number}: expected a JSON object, got {type(record).__name__}")
        kind = record.get("kind")
        if kind == "train":
            train.append(record)
        elif kind == "eval":
            evals.append(record)
    return RunMetrics(train=tuple(train), evals=tuple(evals))


def series(records: tuple[dict[str, Any], ...], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the records holding a finite number under `key`."""
    steps, values = [], []
    for record in records:
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            steps.append(float(record.get("step", len(steps))))
            values.append(float(value))
    return steps, values


@dataclass(frozen=True)
class SeriesFigure:
    """What one metrics figure draws. series: legend name -> (steps, values), (lines: every one distinct);
    bars: True when each series has a single point (one evaluation), drawn as one bar per series
    instead of lone dots (then equal values stay separate bars); y_limits: fixed y axis (fractions:
    FRACTION), None to fit the data."""

    title: str
    file_name: str
    series: dict[str, tuple[list[float], list[float]]]
    ylabel: str
    log_y: bool = False
    y_limits: tuple[float, float] | None = None

    @property
    def bars(self) -> bool:
        return all(len(steps) == 1 for steps, _ in self.series.values())


# A fraction's axis; the top margin keeps a line at 1.0 off the frame.
FRACTION = (0.0, 1.05)


def distinct_series(drawn: dict[str, tuple[list[float], list[float]]]) -> dict[str, tuple[list[float], list[float]]]:
    """`drawn` with series equal to an earlier one merged into it, named "a = b" (a loss whose only
    term is the total is one line, not two lines on top of each other)."""
    merged: dict[str, tuple[list[float], list[float]]] = {}
    for name, points in drawn.items():
        same = next((existing for existing, other in merged.items() if other == points), None)
        if same is None:
            merged[name] = points
        else:
            merged[f"{same} = {name}"] = merged.pop(same)
    return merged


def series_figures(metrics: RunMetrics) -> list[SeriesFigure]:
    """The metrics figures the records allow, in report order; those without data are left out."""
    loss_keys = ["loss"] + sorted({key for record in metrics.train for key in record if key.startswith("loss/")})
    wanted = [
        ("Loss terms", "loss.png", metrics.train, loss_keys, "loss", True, None),
        ("Learning rate", "learning_rate.png", metrics.train, ["lr"], "learning rate", False, None),
        ("Logit scale", "logit_scale.png", metrics.train, ["logit_scale"], "exp(logit_scale)", False, None),
        ("In-batch accuracy", "batch_accuracy.png", metrics.train, ["i2t_accuracy", "t2i_accuracy"],
         "top-1 accuracy", False, FRACTION),
        ("Zero-shot accuracy", "zero_shot_accuracy.png", metrics.evals, ["zero_shot_top1", "zero_shot_top5"],
         "accuracy", False, FRACTION),
        ("Retrieval recall", "retrieval.png", metrics.evals, list(RETRIEVAL_PLOT_KEYS), "recall", False, FRACTION),
    ]
    figures = []
    for title, file_name, records, keys, ylabel, log_y, y_limits in wanted:
        drawn = {key: series(records, key) for key in keys}
        drawn = {key: points for key, points in drawn.items() if points[0]}
        if not drawn:
            continue
        figure = SeriesFigure(title=title, file_name=file_name, series=drawn, ylabel=ylabel, log_y=log_y,
                              y_limits=y_limits)
        if not figure.bars:  # bars side by side hide nothing; lines on top of each other do
            figure = replace(figure, series=distinct_series(drawn))
        figures.append(figure)
    return figures


def draw_series_figure(spec: SeriesFigure) -> Figure:
    """The matplotlib figure of `spec`: bars of the single values (titled with their step), or lines."""
    if spec.bars:
        steps = sorted({steps[0] for steps, _ in spec.series.values()})
        at = ", ".join(f"{step:g}" for step in steps)
        return bar_figure({name: values[0] for name, (_, values) in spec.series.items()},
                          f"{spec.title} (step {at})", spec.ylabel, y_limits=spec.y_limits)
    return series_figure(spec.series, spec.title, spec.ylabel, log_y=spec.log_y, y_limits=spec.y_limits)


def training_figures(metrics: RunMetrics, out_dir: Path) -> dict[str, Path]:
    """Write every figure the records allow; returns {figure title: png path}. Figures whose data
    is absent (e.g. no evaluation yet) are left out."""
    figures = {spec.title: save_figure(draw_series_figure(spec), out_dir / spec.file_name)
               for spec in series_figures(metrics)}
    last_confusion = last_eval_with(metrics, "confusion_matrix")
    if last_confusion is not None:
        classnames = last_confusion.get("classnames") or [str(index) for index in range(len(last_confusion["confusion_matrix"]))]
        title = f"Zero-shot confusion matrix (step {last_confusion.get('step', '?')})"
        figures["Confusion matrix"] = plot_confusion_matrix(
            out_dir / "confusion_matrix.png", np.asarray(last_confusion["confusion_matrix"]), classnames, title)
    return figures


def figure_notes(metrics: RunMetrics) -> list[str]:
    """What the figures measure and their chance levels (`cliplab.eval.chance`), for report.md: the
    in-batch accuracy at the run's global batch size, the last evaluation's zero-shot and retrieval."""
    notes = []
    batch_sizes = sorted({record["global_batch_size"] for record in metrics.train if "global_batch_size" in record})
    if batch_sizes:
        notes.append(in_batch_sentence(batch_sizes[-1]))
    last = metrics.evals[-1] if metrics.evals else {}
    if "zero_shot_top1" in last:
        notes.append(f"Last evaluation: {zero_shot_sentence(last)}.")
    if "image_to_text_R@1" in last:
        notes.append(f"Last evaluation: {retrieval_sentence(last)}.")
    return notes


def last_eval_with(metrics: RunMetrics, key: str) -> dict[str, Any] | None:
    """The last eval record holding `key`, or None."""
    for record in reversed(metrics.evals):
        if key in record:
            return record
    return None


def read_summary(run_dir: Path) -> dict[str, Any]:
    """summary.json of the run as a dict ({} when the run has not written one)."""
    path = run_dir / SUMMARY_FILE
    if not path.is_file():
        return {}
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InvalidInputError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(summary, dict):
        raise InvalidInputError(f"{path} must hold a JSON object, got {type(summary).__name__}")
    return summary


def report_markdown(run_dir: Path, out_dir: Path, metrics: RunMetrics, summary: dict[str, Any],
                    figures: dict[str, Path], notes: list[str]) -> str:
    """The text of report.md: summary table, last evaluation, figures (linked relative to out_dir)."""
    lines = [f"# Training report: {run_dir.resolve().name}", "", f"Run directory: `{run_dir}`", ""]
    lines += ["## Summary", ""]
    flat_summary = _flatten(summary)
    if flat_summary:
        lines += ["| key | value |", "| --- | --- |"]
        lines += [f"| {key} | {_format_value(value)} |" for key, value in flat_summary.items()]
    else:
        lines.append("The run has written no summary.json (still running, or stopped early).")
    last_train = metrics.train[-1] if metrics.train else None
    lines += ["", f"Logged {len(metrics.train)} training records and {len(metrics.evals)} evaluations."]
    if last_train is not None:
        lines.append(f"Last training record: step {last_train.get('step', '?')}, loss "
                     f"{_format_value(last_train.get('loss'))}.")
    last_eval = metrics.evals[-1] if metrics.evals else None
    if last_eval is not None:
        lines += ["", f"## Last evaluation (step {last_eval.get('step', '?')})", "", "| metric | value |",
                  "| --- | --- |"]
        for key, value in last_eval.items():
            if key not in ("kind", "step", "epoch") and isinstance(value, (int, float)) and not isinstance(value, bool):
                lines.append(f"| {key} | {_format_value(value)} |")
        per_class = last_eval.get("zero_shot_per_class")
        if isinstance(per_class, dict) and per_class:
            lines += ["", "| class | zero-shot accuracy |", "| --- | --- |"]
            lines += [f"| {name} | {_format_value(value)} |" for name, value in per_class.items()]
    lines += ["", "## Figures", ""]
    for title, path in figures.items():
        relative = Path(path).resolve().relative_to(out_dir.resolve())
        lines += [f"### {title}", "", f"![{title}]({relative.as_posix()})", ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    return "\n".join(lines)


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}/"))
        elif not isinstance(value, list):
            flat[name] = value
    return flat


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)

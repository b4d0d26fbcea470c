"""CLIP_benchmark's result files: one JSON record per (dataset, model, task, language), the CSV its
`build` command makes of many, and bar charts comparing models.

A record: {"dataset", "model", "pretrained", "task", "metrics": {...}, "language"}, written with
Python's json (so an undefined acc5 is `NaN`, as CLIP_benchmark writes it). `--output` may be a
template with `{dataset}`, `{model}`, `{pretrained}`, `{task}`, `{language}` (CLIP_benchmark's
default: `{dataset}_{pretrained}_{model}_{language}_{task}.json`; `/` in a value becomes `_`).

The CSV (`build_rows` / `write_csv`): one row per record, its metrics and its other fields side by
side plus `model_fullname` = "<model> <pretrained>"; columns in order of first appearance
(CLIP_benchmark's order is that of a Python set). A directory given as input stands for its
`*.json` files.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Iterable

from cliplab.errors import InvalidInputError, MissingInputError

RECORD_KEYS = ("dataset", "model", "pretrained", "task", "metrics", "language")
DEFAULT_OUTPUT = "{dataset}_{pretrained}_{model}_{language}_{task}.json"
# The metric each task's chart compares (retrieval: the smallest k present).
CHART_METRICS = {"zeroshot_classification": "acc1", "linear_probe": "lp_acc1",
                 "zeroshot_retrieval": "image_retrieval_recall@"}


def result_record(dataset: str, language: str, result: dict) -> dict:
    """CLIP_benchmark's record of one result of `eval.benchmark.run_benchmark`."""
    return {"dataset": dataset, "model": result["model"], "pretrained": result["pretrained"], "task": result["task"],
            "metrics": result["metrics"], "language": language}


def output_path(template: str, record: dict) -> Path:
    """`template` filled from `record` (module docstring)."""
    values = {key: str(record[key]).replace("/", "_") for key in ("dataset", "model", "pretrained", "task", "language")}
    values["pretrained_full_path"] = values["pretrained"]
    try:
        return Path(template.format(**values))
    except (KeyError, IndexError, ValueError) as error:
        raise InvalidInputError(f"--output {template!r}: not a template of {{dataset}}, {{model}}, {{pretrained}}, "
                                f"{{task}}, {{language}} ({error})") from None


def output_paths(template: str, records: list[dict]) -> list[Path]:
    """One distinct path per record; a template that sends two records to one file is refused."""
    paths = [output_path(template, record) for record in records]
    if len(set(paths)) != len(paths):
        raise InvalidInputError(f"--output {template!r} names one file for {len(paths)} results; add "
                                "{model}, {task} or {dataset} to it (e.g. results/{dataset}_{model}_{task}.json)")
    return paths


def is_result_file(path: Path) -> bool:
    """Whether `path` holds a benchmark record (a file cliplab or CLIP_benchmark may replace)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(record, dict) and {"dataset", "model", "task", "metrics"} <= set(record)


def check_writable(paths: list[Path]) -> None:
    """InvalidInputError naming the first existing file that is not a benchmark record: a user's
    file is never overwritten (earlier results are)."""
    for path in paths:
        if path.exists() and (path.is_dir() or not is_result_file(path)):
            raise InvalidInputError(f"--output: {path} exists and is not a benchmark result; choose another name")


def write_record(record: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.part")
    temporary.write_text(json.dumps(record) + "\n", encoding="utf-8")
    temporary.replace(path)
    return path


def read_records(inputs: Iterable[str | Path]) -> list[tuple[Path, dict]]:
    """(file, record) of every input file, a directory standing for its `*.json` files."""
    records = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise MissingInputError(f"--build: {path} does not exist")
        files = sorted(path.glob("*.json")) if path.is_dir() else [path]
        for file in files:
            try:
                record = json.loads(file.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise InvalidInputError(f"--build: {file} is not JSON ({error})") from None
            if not isinstance(record, dict) or not {"model", "pretrained", "metrics"} <= set(record) \
                    or not isinstance(record["metrics"], dict):
                raise InvalidInputError(f"--build: {file} is not a benchmark result (model, pretrained, metrics)")
            records.append((file, record))
    return records


def build_rows(records: list[dict]) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows) of CLIP_benchmark's `build` CSV (module docstring)."""
    columns: dict[str, None] = {}
    rows = []
    for record in records:
        row = dict(record["metrics"])
        row.update(record)
        del row["metrics"]
        row["model_fullname"] = f"{row['model']} {row['pretrained']}"
        columns.update(dict.fromkeys(row))
        rows.append(row)
    return list(columns), rows


def write_csv(records: list[dict], path: Path) -> Path:
    columns, rows = build_rows(records)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def chart_metric(task: str, metrics: dict) -> str | None:
    """The metric a task's chart compares, among `metrics` (None: the task has no chart)."""
    wanted = CHART_METRICS.get(task)
    if wanted is None:
        return None
    if not wanted.endswith("@"):
        return wanted if wanted in metrics else None
    ks = sorted(int(key[len(wanted):]) for key in metrics if key.startswith(wanted) and key[len(wanted):].isdigit())
    return f"{wanted}{ks[0]}" if ks else None


def chart_values(records: list[dict]) -> dict[str, tuple[str, dict[str, dict[str, float]]]]:
    """task -> (metric, {dataset: {model full name: value}}): what each task's chart draws."""
    charts: dict[str, tuple[str, dict[str, dict[str, float]]]] = {}
    for record in records:
        metric = chart_metric(record.get("task", ""), record["metrics"])
        if metric is None:
            continue
        name, table = charts.setdefault(record["task"], (metric, {}))
        value = record["metrics"].get(name)
        if isinstance(value, (int, float)) and not math.isnan(value):
            table.setdefault(str(record.get("dataset")), {})[f"{record['model']} {record['pretrained']}"] = float(value)
    return charts


def plot_charts(records: list[dict], directory: Path) -> list[Path]:
    """One bar chart per task (`<task>.png` in `directory`): datasets along x, a bar per model."""
    from cliplab.eval.plots import grouped_bar_figure, save_figure

    written = []
    for task, (metric, table) in chart_values(records).items():
        if table:
            figure = grouped_bar_figure(table, title=f"{task}: {metric}", ylabel=metric, y_limits=(0.0, 1.0))
            written.append(save_figure(figure, directory / f"{task}.png"))
    return written

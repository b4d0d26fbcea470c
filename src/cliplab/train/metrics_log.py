"""Run-directory logging on rank 0: metrics.jsonl, TensorBoard scalars and a tqdm progress bar.

metrics.jsonl holds one JSON object per line: `{"kind": "train", ...}` per logged step,
`{"kind": "eval", ...}` per evaluation (key lists in docs/training.md) and `{"kind": "data", ...}`
per epoch, its skipped-sample counts (docs/data.md). When a run resumes from step
c, lines for steps after c (written before the interruption) are dropped first, so the file reads as
one uninterrupted run; TensorBoard is told the same with `purge_step`.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Mapping

from tqdm import tqdm

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def truncate_metrics_after(path: Path, step: int) -> None:
    """Keep only the lines of `path` whose step is <= `step` (a resumed run rewrites the rest)."""
    if not path.is_file():
        return
    kept = []
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a kill mid-write
            if int(record.get("step", 0)) <= step:
                kept.append(line)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    tmp.replace(path)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep the line parseable by strict readers
    return value


class MetricsLogger:
    """Writes metrics on the main process; every method is a no-op elsewhere."""

    def __init__(self, run_dir: str | Path, *, enabled: bool, tensorboard: bool, resume_step: int | None = None):
        self.enabled = enabled
        self.path = Path(run_dir) / METRICS_FILE
        self._writer = None
        if not enabled:
            return
        if resume_step is not None:
            truncate_metrics_after(self.path, resume_step)
        self._handle = open(self.path, "a")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self._writer = SummaryWriter(str(Path(run_dir) / TENSORBOARD_DIR), purge_step=purge)

    def log(self, record: Mapping[str, Any]) -> None:
        """Append one record (needs 'kind' and 'step'); numeric top-level values go to TensorBoard."""
        if not self.enabled:
            return
        line = json.dumps({key: _json_safe(value) for key, value in record.items()})
        self._handle.write(line + "\n")
        self._handle.flush()
        if self._writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("step", "kind"):
                    self._writer.add_scalar(f"{record['kind']}/{key}", value, record["step"])

    def close(self) -> None:
        if not self.enabled:
            return
        self._handle.close()
        if self._writer is not None:
            self._writer.close()


class ProgressBar:
    """tqdm over optimiser steps on the main process, showing loss, samples/s and the ETA.

    On a terminal it redraws in place; written to a file or a pipe (a job's log) each redraw is a
    new chunk of text, so there it redraws at most every NON_TTY_INTERVAL_S seconds.
    """

    NON_TTY_INTERVAL_S = 30.0

    def __init__(self, *, total_steps: int, initial_step: int, enabled: bool, stream=None):
        stream = sys.stderr if stream is None else stream
        interactive = hasattr(stream, "isatty") and stream.isatty()
        self._bar = tqdm(total=total_steps, initial=initial_step, unit="step", dynamic_ncols=True,
                         disable=not enabled, desc="train", file=stream,
                         mininterval=0.1 if interactive else self.NON_TTY_INTERVAL_S)

    def update(self, *, loss: float, samples_per_s: float, epoch: int) -> None:
        self._bar.set_postfix(loss=f"{loss:.4f}", samples_per_s=f"{samples_per_s:.0f}", epoch=epoch, refresh=False)
        self._bar.update(1)

    def write(self, message: str) -> None:
        self._bar.write(message)

    def close(self) -> None:
        self._bar.close()

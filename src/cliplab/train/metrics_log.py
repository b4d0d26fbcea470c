"""Run-directory logging on rank 0: metrics.jsonl, TensorBoard scalars, a tqdm progress bar.

metrics.jsonl holds one JSON object per line: `{"kind": "train", ...}` per logged step,
`{"kind": "eval", ...}` per evaluation (key lists in docs/training.md) and `{"kind": "data", ...}`
per epoch, its skipped-sample counts (docs/data.md). Each step has at most one line of each kind:
when a run starts again in its directory from step c (a checkpoint of step c, or step 0 when it was
interrupted before its first checkpoint), what the interrupted attempt wrote after that checkpoint
is cut off first (`truncate_metrics_after`), so the file reads as one uninterrupted run;
TensorBoard is told the same with `purge_step`.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from tqdm import tqdm

from cliplab.eval.run_layout import METRICS_FILE, TENSORBOARD_DIR
from cliplab.train.accumulation import LossOutput
from cliplab.train.atomic_files import raise_if_out_of_space
from cliplab.train.config import LoggingConfig, TrainConfig
from cliplab.train.config_io import config_to_dict
from cliplab.train.state import TrainState


def truncate_metrics_after(path: Path, step: int) -> list[dict[str, Any]]:
    """Cut `path` back to the records of steps up to `step`; return the records kept.

    The run appends records in step order, so what an interrupted attempt wrote after step `step`
    follows one point of the file: the first line of a later step, or a line torn by a kill (not
    JSON, or without its newline). The file is truncated there, in place, which needs no free
    space. Blank lines are kept as they are. (An eval line of `step` itself stays: the evaluation
    was done; `Trainer.train` repeats one only when it is missing.)
    """
    if not path.is_file():
        return []
    kept: list[dict[str, Any]] = []
    end = 0
    with open(path, "rb") as handle:
        for line in handle:
            if not line.strip():
                end += len(line)
                continue
            try:
                record = json.loads(line)
            except ValueError:  # JSONDecodeError and UnicodeDecodeError both
                break
            if not isinstance(record, dict) or not line.endswith(b"\n"):
                break
            record_step = record.get("step", 0)
            if not isinstance(record_step, int) or record_step > step:
                break
            kept.append(record)
            end += len(line)
    if end < path.stat().st_size:
        os.truncate(path, end)
    return kept


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep the line parseable by strict readers
    return value


class MetricsLogger:
    """Writes metrics on the main process; every method is a no-op elsewhere.

    start_step: the step the run starts from; lines an earlier attempt wrote after it are dropped
    (`truncate_metrics_after`, kept in `resumed_records`) and TensorBoard is told to hide its
    events from step start_step + 1 on (`purge_step`).
    """

    def __init__(self, run_dir: str | Path, *, enabled: bool, tensorboard: bool, start_step: int = 0):
        self.enabled = enabled
        self.path = Path(run_dir) / METRICS_FILE
        self.resumed_records: list[dict[str, Any]] = []
        self._writer = None
        if not enabled:
            return
        self.resumed_records = truncate_metrics_after(self.path, start_step)
        self._handle = open(self.path, "a")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            events = Path(run_dir) / TENSORBOARD_DIR
            self._writer = SummaryWriter(str(events), purge_step=start_step + 1 if events.exists() else None)

    def log(self, record: Mapping[str, Any]) -> None:
        """Append one record (needs 'kind' and 'step'); numeric top-level values go to TensorBoard."""
        if not self.enabled:
            return
        line = json.dumps({key: _json_safe(value) for key, value in record.items()})
        try:
            self._handle.write(line + "\n")
            self._handle.flush()
        except OSError as error:
            raise_if_out_of_space(error, self.path, len(line) + 1)
            raise
        if self._writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("step", "kind"):
                    self._writer.add_scalar(f"{record['kind']}/{key}", value, record["step"])

    def last(self, kind: str) -> dict[str, Any] | None:
        """The last record of `kind` kept from an earlier attempt (None: none, or not the main process)."""
        return next((record for record in reversed(self.resumed_records) if record.get("kind") == kind), None)

    def close(self) -> None:
        if not self.enabled:
            return
        try:
            self._handle.close()
        except OSError:
            pass  # the failed flush was reported by `log`
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


@dataclass(frozen=True)
class StepReport:
    """What one optimiser step produced, for the log.

    epoch: the epoch the step belongs to; output: its loss (total, terms, metrics); lr: the rate it
    used; grad_norm: the global gradient norm before clipping (None without gradients); samples:
    global samples it consumed; data_wait_s / step_time_s: wall time reading its batches / in all.
    """

    epoch: int
    epoch_done: bool
    output: LossOutput
    lr: float
    grad_norm: torch.Tensor | None
    samples: int
    data_wait_s: float
    step_time_s: float

    @property
    def loss(self) -> float:
        return float(self.output.total)


def train_record(state: TrainState, report: StepReport) -> dict[str, Any]:
    """The `{"kind": "train"}` record of the step that brought the run to `state`."""
    record = {"kind": "train", "step": state.step, "epoch": report.epoch, "samples_seen": state.samples_seen,
              "lr": report.lr, "loss": report.loss}
    record.update({f"loss/{name}": float(value) for name, value in report.output.terms.items()})
    if report.output.metrics is not None:
        metrics = report.output.metrics.as_floats()
        record.update(logit_scale=metrics["logit_scale"], i2t_accuracy=metrics["i2t_accuracy"],
                      t2i_accuracy=metrics["t2i_accuracy"], local_batch_size=int(metrics["local_batch_size"]),
                      global_batch_size=int(metrics["global_batch_size"]))
    record.update(data_wait_s=report.data_wait_s, step_time_s=report.step_time_s,
                  samples_per_s=report.samples / report.step_time_s, skipped_samples=state.skipped_samples,
                  nonfinite_skips=state.nonfinite_skips,
                  grad_norm=float(report.grad_norm) if report.grad_norm is not None else None)
    return record


class TrainLogger:
    """The run's log on the main process: metrics.jsonl and TensorBoard (`MetricsLogger`) and the
    progress bar; every method is a no-op elsewhere. A train record every `log_every_n_steps` steps
    and at the last step."""

    def __init__(self, run_dir: Path, config: LoggingConfig, *, enabled: bool, start_step: int, total_steps: int):
        self.log_every_n_steps, self.total_steps = config.log_every_n_steps, total_steps
        self.metrics = MetricsLogger(run_dir, enabled=enabled, tensorboard=config.tensorboard,
                                     start_step=start_step)
        self.progress = ProgressBar(total_steps=total_steps, initial_step=start_step,
                                    enabled=enabled and config.progress_bar)

    def last_logged(self, kind: str) -> dict[str, Any] | None:
        """The last `kind` record an earlier attempt of the run logged up to the step it starts from
        (None on the other ranks)."""
        return self.metrics.last(kind)

    def log_step(self, state: TrainState, report: StepReport) -> None:
        self.progress.update(loss=report.loss, samples_per_s=report.samples / report.step_time_s, epoch=report.epoch)
        if state.step % self.log_every_n_steps == 0 or state.step == self.total_steps:
            self.metrics.log(train_record(state, report))

    def log_data(self, state: TrainState, epoch: int, skip_record: dict[str, Any]) -> None:
        """An epoch's skip counts (`cliplab.data.skipping.epoch_skip_record`); a line when any was skipped."""
        self.metrics.log({"kind": "data", "step": state.step, "epoch": epoch, **skip_record})
        if skip_record["skipped_samples"]:
            self.note(f"epoch {epoch}: skipped {skip_record['skipped_samples']} bad of "
                      f"{skip_record['samples_drawn']} samples drawn: " + "; ".join(skip_record["skipped_examples"][:3]))

    def log_eval(self, record: dict[str, Any]) -> None:
        self.metrics.log(record)
        if "zero_shot_top1" in record:
            self.note(f"eval at step {record['step']}: zero-shot top-1 {record['zero_shot_top1']:.4f}, "
                      f"top-5 {record['zero_shot_top5']:.4f}")

    def note(self, message: str) -> None:
        self.progress.write(message)

    def close(self) -> None:
        self.progress.close()
        self.metrics.close()


def announce_run(config: TrainConfig, run_dir: Path, resume_from: Path | None, state: TrainState) -> None:
    """Start-up lines of the main process: the run directory, the resolved config, where it resumes."""
    print(f"cliplab train: run directory {run_dir}")
    print("resolved config:\n" + json.dumps(config_to_dict(config), indent=2))
    if resume_from is not None:
        print(f"resuming from {resume_from} (step {state.step}, epoch {state.epoch}, batch {state.batch_in_epoch})")
    if config.eval.eval_at_end and not config.evaluates_at_end:
        print(f"note: no evaluation at the end: a {config.data.dataset_type} run evaluates on data.val_data "
              f"(--val-data), which is not set")

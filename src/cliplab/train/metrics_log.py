"""Run-directory logging on rank 0: metrics.jsonl, TensorBoard scalars, a tqdm progress bar, the summary.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from tqdm import tqdm

from cliplab.eval.run_layout import METRICS_FILE, SUMMARY_FILE, TENSORBOARD_DIR
from cliplab.train.accumulation import LossOutput
from cliplab.train.config import LoggingConfig, TrainConfig
from cliplab.train.config_io import config_to_dict
from cliplab.train.state import TrainState



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

    def __init__(self, run_dir: Path, config: LoggingConfig, *, enabled: bool, resume_step: int | None,
                 total_steps: int, initial_step: int):
        self.log_every_n_steps, self.total_steps = config.log_every_n_steps, total_steps
        self.metrics = MetricsLogger(run_dir, enabled=enabled, tensorboard=config.tensorboard,
                                     resume_step=resume_step)
        self.progress = ProgressBar(total_steps=total_steps, initial_step=initial_step,
                                    enabled=enabled and config.progress_bar)

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


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    """summary.json, and the closing line of the run."""
    with open(run_dir / SUMMARY_FILE, "w") as handle:
        json.dump(summary, handle, indent=2)
        handle.write("\n")
    evaluation = ""
    if "zero_shot_top1" in summary:
        evaluation = f"; zero-shot top-1 {summary['zero_shot_top1']:.4f}, top-5 {summary['zero_shot_top5']:.4f}"
    elif "image_to_text_R@1" in summary:  # data without classes: retrieval only
        evaluation = (f"; retrieval R@1 image-to-text {summary['image_to_text_R@1']:.4f}, "
                      f"text-to-image {summary['text_to_image_R@1']:.4f}")
    print(f"done: {summary['steps']} steps, {summary['samples_seen']} samples in {summary['wall_seconds']:.0f} s"
          + evaluation + f"; summary in {run_dir / SUMMARY_FILE}")

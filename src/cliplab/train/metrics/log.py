"""Run-directory logging on rank 0: metrics.jsonl, its sinks (TensorBoard, W&B), the console.

metrics.jsonl holds one JSON object per line: `{"kind": "train", ...}` per logged step,
`{"kind": "eval", ...}` per evaluation (key lists in docs/training.md) and `{"kind": "data", ...}`
per epoch, its skipped-sample counts (docs/data.md). Each step has at most one line of each kind:
when a run starts again in its directory from step c (a checkpoint of step c, or step 0 when it was
interrupted before its first checkpoint), what the interrupted attempt wrote after that checkpoint
is cut off first (`truncate_metrics_after`), so the file reads as one uninterrupted run;
TensorBoard is told the same with `purge_step`.

The console (`cliplab.console.Progress`): a tqdm bar over the steps on a terminal; in a log file, or
with the bar off, a plain line every `log_every_n_steps` steps (`step_line`). Evaluations and skipped
samples get a line either way.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from cliplab.console import Progress, format_duration
from cliplab.eval.chance import percent, retrieval_sentence, zero_shot_sentence
from cliplab.eval.run_layout import METRICS_FILE, RUN_CONFIG_FILE, TENSORBOARD_DIR
from cliplab.train.checkpointing.atomic_files import raise_if_out_of_space
from cliplab.train.config import LoggingConfig, TrainConfig
from cliplab.train.config.io import differences_from_defaults
from cliplab.train.metrics.sinks import ScalarSink, TensorBoardSink, WandbSink, scalars_of
from cliplab.train.state import TrainState
from cliplab.train.step.accumulation import LossOutput


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
    """Writes metrics on the main process; every method is a no-op elsewhere. Each record goes to
    metrics.jsonl, and its numeric values to every sink (`metric_sinks`: TensorBoard, W&B).

    start_step: the step the run starts from; lines an earlier attempt wrote after it are dropped
    (`truncate_metrics_after`, kept in `resumed_records`) before the sinks are opened.
    """

    def __init__(self, run_dir: str | Path, *, enabled: bool, sinks: Callable[[], list[ScalarSink]] = list,
                 start_step: int = 0):
        self.enabled = enabled
        self.path = Path(run_dir) / METRICS_FILE
        self.resumed_records: list[dict[str, Any]] = []
        self._sinks: list[ScalarSink] = []
        if not enabled:
            return
        self.resumed_records = truncate_metrics_after(self.path, start_step)
        self._handle = open(self.path, "a")
        self._sinks = sinks()

    def log(self, record: Mapping[str, Any]) -> None:
        """Append one record (needs 'kind' and 'step'); numeric top-level values go to the sinks."""
        if not self.enabled:
            return
        line = json.dumps({key: _json_safe(value) for key, value in record.items()})
        try:
            self._handle.write(line + "\n")
            self._handle.flush()
        except OSError as error:
            raise_if_out_of_space(error, self.path, len(line) + 1)
            raise
        scalars = scalars_of(record)
        for sink in self._sinks:
            sink.log(scalars, record["step"])

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
        for sink in self._sinks:
            sink.close()


def build_sinks(run_dir: Path, config: LoggingConfig, *, start_step: int,
                run_config: dict[str, Any]) -> list[ScalarSink]:
    """The sinks `config` asks for (TensorBoard, W&B), opened now. TensorBoard events an earlier
    attempt wrote after `start_step` (0 too: a kill before the first checkpoint) are purged."""
    sinks: list[ScalarSink] = []
    if config.tensorboard:
        earlier_events = (Path(run_dir) / TENSORBOARD_DIR).exists()
        sinks.append(TensorBoardSink(run_dir, resume_step=start_step if earlier_events else None))
    if config.wandb:
        sinks.append(WandbSink(run_dir, project=config.wandb_project, config=run_config))
    return sinks


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


def step_line(state: TrainState, report: StepReport, *, total_steps: int, eta_s: float | None) -> str:
    """The console line of a logged step: step, epoch, loss (and its terms when they say more than
    the total), lr, samples/s, data wait, ETA."""
    terms = {name: float(value) for name, value in report.output.terms.items()}
    loss = f"loss {report.loss:.4f}"
    if len(terms) > 1 or any(value != report.loss for value in terms.values()):
        loss += " (" + ", ".join(f"{name} {value:.4f}" for name, value in terms.items()) + ")"
    parts = [f"step {state.step}/{total_steps} ({100 * state.step / total_steps:.0f}%)", f"epoch {report.epoch}",
             loss, f"lr {report.lr:.3g}", f"{report.samples / report.step_time_s:.0f} samples/s",
             f"data wait {report.data_wait_s:.3f} s"]
    if eta_s is not None:
        parts.append(f"ETA {format_duration(eta_s)}")
    return " | ".join(parts)


# An eval record's figures the console repeats for the EMA's weights: key -> name.
EMA_FIGURES = (("zero_shot_top1", "zero-shot top-1"), ("zero_shot_top5", "top-5"),
               ("image_to_text_R@1", "retrieval R@1 image-to-text"), ("text_to_image_R@1", "text-to-image"))


def eval_line(record: Mapping[str, Any]) -> str:
    """The console lines of an evaluation: zero-shot accuracy and/or retrieval R@1, each with what it
    measures and its chance level (`cliplab.eval.chance`), and the same figures of the EMA's weights."""
    parts = []
    if "zero_shot_top1" in record:
        parts.append(zero_shot_sentence(record))
    if "image_to_text_R@1" in record:
        parts.append(retrieval_sentence(record))
    ema = [f"{name} {percent(record['ema/' + key])}" for key, name in EMA_FIGURES if "ema/" + key in record]
    if ema:
        parts.append("EMA weights: " + ", ".join(ema))
    return f"eval at step {record['step']}:" + "".join(f"\n  {part}" for part in parts)


class TrainLogger:
    """The run's log on the main process: metrics.jsonl and its sinks (`MetricsLogger`) and the
    console (`cliplab.console.Progress`: a bar on a terminal, plain lines in a log file); every
    method is a no-op elsewhere. A train record and a console line every `log_every_n_steps` steps
    and at the last step."""

    def __init__(self, run_dir: Path, config: LoggingConfig, *, enabled: bool, start_step: int, total_steps: int,
                 run_config: dict[str, Any]):
        self.log_every_n_steps, self.total_steps = config.log_every_n_steps, total_steps
        self.metrics = MetricsLogger(run_dir, enabled=enabled, start_step=start_step, sinks=lambda: build_sinks(
            run_dir, config, start_step=start_step, run_config=run_config))
        self.progress = Progress(total_steps, desc="train", unit="step", bar=config.progress_bar,
                                 initial=start_step, line_interval_s=None, enabled=enabled)

    def last_logged(self, kind: str) -> dict[str, Any] | None:
        """The last `kind` record an earlier attempt of the run logged up to the step it starts from
        (None on the other ranks)."""
        return self.metrics.last(kind)

    def log_step(self, state: TrainState, report: StepReport) -> None:
        self.progress.update(1, loss=f"{report.loss:.4f}", samples_per_s=f"{report.samples / report.step_time_s:.0f}",
                             epoch=report.epoch)
        if state.step % self.log_every_n_steps == 0 or state.step == self.total_steps:
            self.metrics.log(train_record(state, report))
            self.progress.line(step_line(state, report, total_steps=self.total_steps, eta_s=self.progress.eta_s()))

    def log_data(self, state: TrainState, epoch: int, skip_record: dict[str, Any]) -> None:
        """An epoch's skip counts (`cliplab.data.skipping.epoch_skip_record`); a line when any was skipped."""
        self.metrics.log({"kind": "data", "step": state.step, "epoch": epoch, **skip_record})
        if skip_record["skipped_samples"]:
            self.note(f"epoch {epoch}: skipped {skip_record['skipped_samples']} bad of "
                      f"{skip_record['samples_drawn']} samples drawn: " + "; ".join(skip_record["skipped_examples"][:3]))

    def log_eval(self, record: dict[str, Any]) -> None:
        self.metrics.log(record)
        self.note(eval_line(record))

    def note(self, message: str) -> None:
        self.progress.write(message)

    def close(self) -> None:
        self.progress.close()
        self.metrics.close()


def announce_run(config: TrainConfig, run_dir: Path, resume_from: Path | None, state: TrainState) -> None:
    """Start-up lines of the main process: the run directory, where the whole config is and what
    differs from the defaults, where it resumes."""
    print(f"cliplab train: run directory {run_dir}")
    changed = differences_from_defaults(config)
    print(f"config: {run_dir / RUN_CONFIG_FILE}; " + ("set here (the rest are defaults):" if changed
                                                      else "every setting is the default"))
    for key, value in changed.items():
        print(f"  {key}: {json.dumps(value)}")
    if resume_from is not None:
        print(f"resuming from {resume_from} (step {state.step}, epoch {state.epoch}, batch {state.batch_in_epoch})")
    if config.eval.eval_at_end and not config.evaluates_at_end:
        print(f"note: no evaluation at the end: a {config.data.dataset_type} run evaluates on data.val_data "
              f"(--val-data), which is not set")

"""`train(config) -> TrainResult`: a `Trainer` built from named components, and its loop.

`Trainer.__init__` builds each component once from its config section: the run directory, the
model (`setup.model`, with its LoRA adapters: `setup.lora`), its tokenizer (`setup.tokenizer`), the
x-clip objectives (`setup.objectives`), the DDP/FSDP2/compile wrapper (`parallel.build`, which also
decides where the model is built), the optimiser and its parameter groups (`step.optim`,
`step.param_groups`), the EMA of the weights (`step.ema`), the precision with its GradScaler
(`step.precision`), the checkpointer (`build_checkpointer`), the loss (`step.loss_table`), the data
(`setup.data`), the logger (`metrics.log`) and the evaluator (`evaluation`). The order of the
builds is the order in which they draw from the global RNG, which the golden trajectory pins.

`Trainer.train()` repeats `train_step()` and then lets the checkpointer and the evaluator act when
their rule says so (save before evaluating, so that a failing evaluation cannot lose the weights
just trained). `train_step()` reads the step's micro-batches, agrees with the other ranks on what was
read and on whether a preemption signal asks the run to stop (`preemption`: then the run saves the
step it reached and stops), cuts their tokens to the prefix the global batch needs (`text_prefix`),
forward/backwards them (`accumulation`), unscales and clips, lets the
guard decide whether the step is finite on every rank, steps the optimiser at the scheduled lr,
clamps the logit scale, updates the EMA, counts the step in `TrainState` and logs it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from cliplab.data.skipping import agree_on_step, epoch_skip_record, raise_read_failures
from cliplab.distributed.agreement import raise_if_any_rank_failed, run_on_main
from cliplab.eval.run_layout import CHECKPOINTS_DIR
from cliplab.train.checkpointing.checkpointer import CheckpointedParts, Checkpointer
from cliplab.train.checkpointing.dcp import DcpCheckpointer
from cliplab.train.checkpointing.manager import CheckpointManager
from cliplab.train.config import CheckpointConfig, TrainConfig
from cliplab.train.config.history import check_config_on_resume, record_run_config
from cliplab.train.config.io import config_to_dict
from cliplab.train.evaluation import Evaluator
from cliplab.train.metrics.log import StepReport, TrainLogger, announce_run
from cliplab.train.metrics.summary import strict_summary, write_summary
from cliplab.train.parallel.build import ModelBuild, ParallelModel, whole_model, wrap_for_training
from cliplab.train.parallel.processes import DistributedContext, init_distributed, shutdown
from cliplab.train.parallel.torch_setup import configure_torch, seed_everything
from cliplab.train.preemption import Preemption, PreemptionHandler
from cliplab.train.run_dir import RunDirectory, claim_run_dir, resolve_resume
from cliplab.train.setup.data import TrainData
from cliplab.train.setup.model import build_training_model, build_transforms, describe_run_inputs
from cliplab.train.setup.model_plan import plan_model
from cliplab.train.setup.objectives import ModelWithObjectives, build_run_objectives
from cliplab.train.setup.tokenizer import build_run_tokenizer
from cliplab.train.state import TrainState
from cliplab.train.step.accumulation import LossOutput, MicroBatch, forward_backward
from cliplab.train.step.ema import WeightEma
from cliplab.train.step.text_prefix import cut_to_step_prefix
from cliplab.train.step.guards import NonFiniteGuard
from cliplab.train.step.loss_table import build_training_loss
from cliplab.train.step.optim import build_optimizer, clamp_logit_scale_, clip_gradients, describe_optimizer
from cliplab.train.step.precision import Precision
from cliplab.train.step.schedule import learning_rate, set_lr, warn_if_warmup_outlasts_run


@dataclass
class TrainResult:
    """run_dir: the run directory; summary: the content of its summary.json ({} when a signal stopped
    the run: it has not finished); preemption: how a signal stopped it (None: it finished)."""

    run_dir: Path
    summary: dict[str, Any]
    preemption: Preemption | None = None


@dataclass
class TrainHooks:
    """Optional extension points, for tests and experiments.

    modify_loss(step, loss_output) -> LossOutput runs before backward (step: 0-based index of the
    step being computed); after_step(step, model) runs after each optimiser step (step: steps done)
    with the unwrapped model; after_batches(step, batches) sees the batch dicts (`cliplab.data.batching`)
    this rank read for step `step` (0-based), before its forward pass.
    """

    modify_loss: Callable[[int, LossOutput], LossOutput] | None = None
    after_step: Callable[[int, nn.Module], None] | None = None
    after_batches: Callable[[int, list[dict]], None] | None = None


def train(config: TrainConfig, *, hooks: TrainHooks | None = None) -> TrainResult:
    """Train (or resume) the run described by `config`; see docs/training.md."""
    context = init_distributed(config.distributed)
    try:
        with (claim_run_dir(config) as run_directory,  # locked until the run ends, however it ends
              PreemptionHandler(exit_code=config.checkpoint.requeue_exit_code) as preemption):
            with run_directory.removed_if_start_fails():  # a failed start leaves no directory behind
                trainer = Trainer(config, context, hooks or TrainHooks(), run_directory, preemption)
            result = trainer.train()
        del trainer  # its DDP reducer holds the process group: released before the group is left
        return result
    finally:
        shutdown(context)



def build_checkpointer(config: CheckpointConfig, manager: CheckpointManager, parts: CheckpointedParts, *,
                       saved_config: dict, parallel: ParallelModel) -> Checkpointer:
    """The checkpointer for how `parallel` holds the model: the plain one for whole copies, the
    sharded one under FSDP2 (`checkpointing.dcp`: DCP directories that reshard). Chosen here, with
    the Trainer, so that neither `parallel` nor `checkpointing` imports the other's choice."""
    if not parallel.sharded:
        return Checkpointer(config, manager, parts, saved_config=saved_config)
    return DcpCheckpointer(config, manager, parts, saved_config=saved_config, parallel=parallel)


class Trainer:
    """One run: its components (see the module docstring), its state, and the loop over its steps."""

    def __init__(self, config: TrainConfig, context: DistributedContext, hooks: TrainHooks,
                 run_directory: RunDirectory, preemption: PreemptionHandler | None = None):
        self.wall_start = time.perf_counter()
        self.config, self.context, self.hooks = config, context, hooks
        self.preemption = preemption or PreemptionHandler(exit_code=config.checkpoint.requeue_exit_code)
        configure_torch(config.loop, context)
        self.run_dir = run_directory.path
        manager = CheckpointManager(self.run_dir / CHECKPOINTS_DIR, keep=config.checkpoint.keep_checkpoints,
                                    run_id=run_directory.run_id)
        resume_from = run_on_main(lambda: resolve_resume(config.checkpoint.resume, manager))
        config_on_resume = run_on_main(lambda: check_config_on_resume(config, resume_from))

        torch.manual_seed(config.loop.seed)  # identical initial weights on every rank
        build = ModelBuild(config.distributed, context, compile=config.model.torchcompile,
                           precision=config.loop.precision)
        plan = None if config.model.pretrained else plan_model(config.model, config.data.dataset_type)
        with build.building():
            built = build_training_model(config.model, build.device, plan=plan, resuming=resume_from is not None,
                                         lora=config.lora)
        self.model = built.model
        run_tokenizer = build_run_tokenizer(config.model, config.data, self.model.config, resume_from=resume_from,
                                            run_dir=self.run_dir, pretrained_tokenizer=built.tokenizer)
        self.tokenizer = run_tokenizer.tokenizer
        with build.building():
            self.objectives = build_run_objectives(config.objectives, self.model, self.tokenizer,
                                                   accum_freq=config.loop.accum_freq)
        self.trainable = self.model if self.objectives is None else ModelWithObjectives(self.model, self.objectives)
        self.parallel = wrap_for_training(self.trainable, self.model, build, built.weights)
        self.optimizer = build_optimizer(self.trainable, config.optim, self.model)
        self.ema = WeightEma(self.model, config.ema) if config.ema.enabled else None
        self.precision = Precision(config.loop, context.device)
        self.checkpointer = build_checkpointer(config.checkpoint, manager, CheckpointedParts(
            model=self.model, tokenizer=self.tokenizer, optimizer=self.optimizer, scaler=self.precision.scaler,
            objectives=self.objectives, ema=self.ema), saved_config=config_to_dict(config), parallel=self.parallel)
        if resume_from is not None:
            self.state = self.checkpointer.restore(resume_from, rank=context.rank)
        else:
            self.state = TrainState()
            seed_everything(config.loop.seed + context.rank)
        if context.is_main:
            announce_run(config, self.run_dir, resume_from, self.state)
            record_run_config(config, self.run_dir, config_on_resume)
            print("\n".join(describe_run_inputs(built, run_tokenizer)))
            print(describe_optimizer(self.optimizer, config.optim) + " (cliplab train --dry-run lists the groups)")
            if self.ema is not None:
                print(self.ema.describe())

        self.loss = build_training_loss(config.loss, self.model.config, context, self.objectives)
        transforms = build_transforms(self.model.config.preprocess)
        self.data = TrainData(config.data, config.loop, context, transform=transforms.train, tokenizer=self.tokenizer)
        if resume_from is not None:
            self.data.check_resumable(self.state, resume_from)
        self.data.start_epoch(self.state.epoch, self.state.batch_in_epoch)
        self.total_steps = self.data.total_steps()
        self.guard = NonFiniteGuard(config.guards.max_nonfinite_steps)
        if context.is_main:
            warn_if_warmup_outlasts_run(config.optim, self.total_steps)
        self.logger = self._open_logger()
        self.evaluator = Evaluator(config.eval, config.data, evaluates_at_end=config.evaluates_at_end,
                                   model=self.model, tokenizer=self.tokenizer, transform=transforms.eval,
                                   device=context.device, autocast=self.precision.autocast,
                                   log=self.logger.log_eval, gather_model=self._gathered_model(),
                                   ema_averages=self._ema_averages())
        self.evaluator.restore(run_on_main(lambda: self.logger.last_logged("eval")))
        self.last_report: StepReport | None = None

    def _open_logger(self) -> TrainLogger:
        """The run's logger; opening a sink can fail on rank 0 alone (W&B), so the ranks agree first."""
        logger, error = None, None
        try:
            logger = TrainLogger(self.run_dir, self.config.logging, enabled=self.context.is_main,
                                 start_step=self.state.step, total_steps=self.total_steps,
                                 run_config=config_to_dict(self.config))
        except Exception as caught:  # noqa: BLE001 - raised on every rank by raise_if_any_rank_failed
            error = caught
        raise_if_any_rank_failed(error)
        return logger

    def train(self) -> TrainResult:
        state = self.state
        try:
            if state.step > 0:  # resumed: an evaluation due after the checkpoint may not have run (or been logged)
                self.evaluator.evaluate_if_due(state, epoch_done=state.batch_in_epoch == 0,
                                               finished=state.step >= self.total_steps)
            while state.step < self.total_steps:
                report = self.train_step()
                if report is None:  # the ranks agreed to stop on a preemption signal
                    return self._stop_preempted()
                finished = state.step >= self.total_steps
                if report.epoch_done or finished:  # the epoch's skip counts (so far, when the run ends mid-epoch)
                    self._log_epoch_samples(report)
                self.checkpointer.save_if_due(state, epoch_done=report.epoch_done, finished=finished)
                self.evaluator.evaluate_if_due(state, epoch_done=report.epoch_done, finished=finished)
                if report.epoch_done and not finished:
                    self.data.start_epoch(state.epoch, 0)
        finally:
            self.logger.close()
        return self._finish()

    def train_step(self) -> StepReport | None:
        """One optimiser step (a collective: every rank runs it); returns what the log records, or None
        when the ranks agreed to stop before it (a preemption signal: nothing trained, nothing counted)."""
        state, hooks, data = self.state, self.hooks, self.data
        step_start = time.perf_counter()
        batches, read_error = data.read_step()
        data_wait = time.perf_counter() - step_start
        if not self._agree_to_train(batches, read_error):
            return None
        if hooks.after_batches is not None:
            hooks.after_batches(state.step, batches)
        lr = learning_rate(state.step, self.total_steps, self.config.optim)
        set_lr(self.optimizer, lr)
        self.optimizer.zero_grad(set_to_none=True)
        output = forward_backward(self._micro_batches(batches), forward=self._forward, compute_loss=self._loss_of,
                                  backward=self.precision.backward, no_sync=self.parallel.no_sync,
                                  device=self.context.device)
        grad_norm, skipped = self._optimizer_step(output)
        epoch = state.epoch
        state.finish_step(micro_batches=data.micro_batches, global_micro_batch=data.global_micro_batch)
        self.guard.record(state, skipped)
        epoch_done = state.finish_epoch_if_over(micro_batches=data.micro_batches,
                                                batches_per_epoch=data.batches_per_epoch)
        if hooks.after_step is not None:
            hooks.after_step(state.step, self.model)
        report = StepReport(epoch=epoch, epoch_done=epoch_done, output=output, lr=lr, grad_norm=grad_norm,
                            samples=data.step_samples, data_wait_s=data_wait,
                            step_time_s=time.perf_counter() - step_start)
        self.logger.log_step(state, report)
        self.last_report = report
        return report

    def _agree_to_train(self, batches: list[dict], read_error: Exception | None) -> bool:
        """The step boundary's one collective: False when any rank was signalled to stop (checked
        before read errors: a signalled data-loader worker may have died); else every rank raises a
        failed read, or the step's sample counts go into the state and True."""
        counts = agree_on_step(batches, read_error, votes=self.preemption.votes())
        if self.preemption.agree(counts.votes):
            return False
        raise_read_failures(counts, read_error)
        self.state.record_step_samples(counts.skipped, counts.drawn)
        return True

    def _gathered_model(self) -> Callable[[], nn.Module | None] | None:
        """Under FSDP2, the collective that gives the main rank the whole model to evaluate."""
        if not self.parallel.sharded:
            return None
        device, keep = self.context.device, self.context.is_main
        return lambda: whole.to(device) if (whole := whole_model(self.parallel, keep=keep)) is not None else None

    def _ema_averages(self) -> Callable[[], dict[str, torch.Tensor] | None] | None:
        """The collective that gives the main rank the EMA's averages whole (None without an EMA)."""
        if self.ema is None:
            return None
        return lambda: self.ema.whole_averages(keep=self.context.is_main)

    def _micro_batches(self, batches: list[dict]) -> list[MicroBatch]:
        """The step's micro-batches on the device; without objective terms (which read the tokens
        themselves) their tokens cut to the prefix the global batch needs (`step.text_prefix`, a
        collective), on the host."""
        device = self.context.device
        micro_batches = [MicroBatch(batch["images"], batch["tokens"]) for batch in batches]
        if self.objectives is None:
            micro_batches = cut_to_step_prefix(micro_batches, self.model)
        return [MicroBatch(micro.images.to(device, non_blocking=True), micro.tokens.to(device, non_blocking=True))
                for micro in micro_batches]

    def _forward(self, images: torch.Tensor, tokens: torch.Tensor) -> dict[str, Any]:
        with self.precision.autocast():
            return self.parallel.module(images, tokens)

    def _loss_of(self, model_output: dict[str, Any]) -> LossOutput:
        result = self.loss(model_output)
        if self.hooks.modify_loss is not None:
            result = self.hooks.modify_loss(self.state.step, result)
        return result

    def _optimizer_step(self, output: LossOutput) -> tuple[torch.Tensor | None, bool]:
        """Unscale, clip, agree on skipping a non-finite step, step, clamp. Returns the gradient norm
        before clipping and whether the step was skipped."""
        self.precision.unscale_(self.optimizer)
        grad_norm = clip_gradients(self.trainable, self.config.optim.grad_clip_norm)
        skipped = self.guard.should_skip(output.total, None if self.precision.checks_gradients else grad_norm)
        self.precision.step(self.optimizer, skip=skipped)
        if skipped:
            self.optimizer.zero_grad(set_to_none=True)
            self.logger.note(f"step {self.state.step + 1}: non-finite loss or gradient, step skipped "
                             f"({self.state.consecutive_nonfinite + 1} in a row)")
        else:
            clamp_logit_scale_(self.model, self.config.loss.max_logit_scale)
            if self.ema is not None:
                self.ema.update(self.state.step + 1)
        return grad_norm, skipped

    def _log_epoch_samples(self, report: StepReport) -> None:
        state = self.state
        record = epoch_skip_record(skipped=state.epoch_skipped_samples, drawn=state.epoch_samples_drawn,
                                   local_examples=self.data.skipped_examples)
        if report.epoch_done:
            state.start_epoch_sample_counts()
        self.logger.log_data(state, report.epoch, record)

    def _final_loss(self) -> float | None:
        """The last step's loss: this attempt's, or the one an earlier attempt logged (a run resumed
        from its final checkpoint trains no step)."""
        if self.last_report is not None:
            return self.last_report.loss
        record = self.logger.last_logged("train")
        return float(record["loss"]) if record is not None and record["step"] == self.state.step else None

    def _finish(self) -> TrainResult:
        state = self.state
        summary = {
            "run_dir": str(self.run_dir),
            "steps": state.step,
            "epochs": state.epoch,
            "samples_seen": state.samples_seen,
            "skipped_samples": state.skipped_samples,
            "nonfinite_skips": state.nonfinite_skips,
            "wall_seconds": time.perf_counter() - self.wall_start,
            "world_size": self.context.world_size,
            "final_loss": self._final_loss(),
            "checkpoint": str(self.checkpointer.latest()) if self.context.is_main else None,
        }
        summary["final_loss_step"] = state.step if summary["final_loss"] is not None else None
        if self.evaluator.last_record is not None:
            record = self.evaluator.last_record
            summary.update({key: value for key, value in record.items() if key not in ("kind", "step", "epoch")})
            summary.update(eval_step=record["step"], eval_epoch=record["epoch"])
        summary = strict_summary(summary)
        if self.context.is_main:
            write_summary(self.run_dir, summary)
        return TrainResult(run_dir=self.run_dir, summary=summary)

    def _stop_preempted(self) -> TrainResult:
        """Save and verify the step reached (a collective); no summary: the run has not finished
        (`--resume latest` finishes it)."""
        preemption = self.preemption.stop(self.checkpointer, self.state, self.run_dir, self.logger.note)
        return TrainResult(run_dir=self.run_dir, summary={}, preemption=preemption)

"""`train(config) -> TrainResult`: the training loop, orchestration only.

Each step: read accum_freq micro-batches, forward/backward them (`accumulation`), unscale and clip
(`optim`), let the guard decide whether the step is finite on every rank (`guards`), step the
optimiser at the scheduled lr (`schedule`), clamp the logit scale, then log (`metrics_log`),
evaluate (`evaluation`) and checkpoint (`checkpoint`) when due. The pieces are built by `builders`;
this module only decides the order.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from cliplab.data.loader import build_train_loader
from cliplab.data.skipping import SkipCounter
from cliplab.train import builders
from cliplab.train.accumulation import LossOutput, MicroBatch, forward_backward
from cliplab.train.checkpoint import CheckpointManager, TrainState, load_checkpoint
from cliplab.train.config import ConfigError, TrainConfig
from cliplab.train.config_io import config_to_dict, save_config
from cliplab.train.distributed_setup import DistributedContext, init_distributed, shutdown
from cliplab.train.evaluation import evaluate
from cliplab.train.guards import NonFiniteGuard, any_rank_true
from cliplab.train.loss_setup import ModelWithObjectives, compute_loss
from cliplab.train.metrics_log import MetricsLogger, ProgressBar
from cliplab.train.optim import clamp_logit_scale_
from cliplab.train.run_dir import prepare_run_dir, resolve_resume
from cliplab.train.schedule import learning_rate, set_lr

SUMMARY_FILE = "summary.json"


@dataclass
class TrainResult:
    """run_dir: the run directory; summary: the content of its summary.json."""

    run_dir: Path
    summary: dict[str, Any]


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
        return _train(config, context, hooks or TrainHooks())
    finally:
        shutdown(context)


def _next_batch(iterator: Iterator[dict]) -> dict:
    """next(iterator) without disturbing the global torch RNG (DataLoader draws a seed from it when
    an epoch's iterator starts), so the training RNG stream is the same in a resumed run."""
    state = torch.get_rng_state()
    try:
        return next(iterator)
    finally:
        torch.set_rng_state(state)


def _read_batches(iterator: Iterator[dict], count: int) -> tuple[list[dict], Exception | None]:
    """The next `count` batches, and the error that ended the read early (None when none did).

    The error is returned, not raised: the other ranks must hear of it first (`SkipCounter.record_step`),
    or they would wait for this one in the next collective until the process-group timeout."""
    batches: list[dict] = []
    try:
        for _ in range(count):
            batches.append(_next_batch(iterator))
    except Exception as error:  # noqa: BLE001 - re-raised by record_step on every rank
        return batches, error
    return batches, None


def _train(config: TrainConfig, context: DistributedContext, hooks: TrainHooks) -> TrainResult:
    wall_start = time.perf_counter()
    builders.configure_torch(config.loop, context)
    run_dir = prepare_run_dir(config, context)
    checkpoints = CheckpointManager(run_dir / "checkpoints", keep=config.checkpoint.keep_checkpoints)
    resume_from = resolve_resume(config.checkpoint.resume, checkpoints)

    torch.manual_seed(config.loop.seed)  # identical initial weights on every rank
    model = builders.build_model(config.model, context.device)
    tokenizer = builders.build_tokenizer(config, model, resume_from, run_dir, context)
    objectives = builders.build_objectives(config, model, tokenizer)
    trainable = model if objectives is None else ModelWithObjectives(model, objectives)
    optimizer = builders.build_optimizer_for(trainable, config.optim)
    scaler = builders.build_grad_scaler(config.loop, context.device)
    state = TrainState()
    if resume_from is not None:
        state = load_checkpoint(resume_from, model=model, optimizer=optimizer, scaler=scaler, rank=context.rank,
                                extra_modules={"objectives": objectives} if objectives is not None else None)
    else:
        builders.seed_everything(config.loop.seed + context.rank)
    if context.is_main:
        save_config(config, run_dir / "config.json")
        print(f"cliplab train: run directory {run_dir}")
        print("resolved config:\n" + json.dumps(config_to_dict(config), indent=2))
        if resume_from is not None:
            print(f"resuming from {resume_from} (step {state.step}, epoch {state.epoch}, batch {state.batch_in_epoch})")
        if config.eval.eval_at_end and not config.evaluates_at_end:
            print(f"note: no evaluation at the end: a {config.data.dataset_type} run evaluates on data.val_data "
                  f"(--val-data), which is not set")

    train_model = builders.wrap_for_training(trainable, config, context)
    loss_fn = builders.build_loss_for(config, model, context)
    autocast = builders.autocast_factory(config.loop, context.device)
    transforms = builders.build_transforms(model)
    dataset = builders.build_train_dataset(config.data)
    guard = NonFiniteGuard(config.guards.max_nonfinite_steps, total_skips=state.nonfinite_skips,
                           consecutive=state.consecutive_nonfinite)
    logger = MetricsLogger(run_dir, enabled=context.is_main, tensorboard=config.logging.tensorboard,
                           resume_step=state.step if resume_from is not None else None)
    accum = config.loop.accum_freq
    global_micro_batch = config.loop.batch_size * context.world_size

    def load_epoch(epoch: int, start_batch: int):
        return build_train_loader(config.data, transform=transforms.train, tokenize=tokenizer,
                                  batch_size=config.loop.batch_size, rank=context.rank,
                                  world_size=context.world_size, seed=config.loop.seed, epoch=epoch,
                                  start_batch=start_batch, dataset=dataset)

    loader, num_batches = load_epoch(state.epoch, state.batch_in_epoch)
    steps_per_epoch = num_batches // accum
    if steps_per_epoch == 0:
        raise ConfigError("loop.accum_freq", accum, f"must be at most the {num_batches} batches of "
                          f"{config.loop.batch_size} an epoch has per rank: lower loop.batch_size or "
                          "loop.accum_freq, or add data")
    total_steps = config.loop.epochs * steps_per_epoch
    if config.loop.max_steps is not None:
        total_steps = min(total_steps, config.loop.max_steps)

    def save(at_state: TrainState) -> None:
        checkpoints.save(model=model, tokenizer=tokenizer, optimizer=optimizer, scaler=scaler, state=at_state,
                         config=config_to_dict(config), context=context,
                         extra_modules={"objectives": objectives} if objectives is not None else None)

    def run_eval(at_state: TrainState) -> dict[str, Any] | None:
        """Evaluate on the main process; an error there is raised on every rank (the others would
        otherwise wait for it in their next collective until the process-group timeout)."""
        record, failure = None, None
        if context.is_main:
            try:
                metrics = evaluate(model, tokenizer, data_config=config.data, eval_config=config.eval,
                                   transform=transforms.eval, device=context.device, autocast=autocast)
            except Exception as error:  # noqa: BLE001 - re-raised below, once every rank knows
                failure = error
            else:
                record = {"kind": "eval", "step": at_state.step, "epoch": at_state.epoch, **metrics}
                logger.log(record)
                if "zero_shot_top1" in metrics:
                    progress.write(f"eval at step {at_state.step}: zero-shot top-1 {metrics['zero_shot_top1']:.4f}, "
                                   f"top-5 {metrics['zero_shot_top5']:.4f}")
        if any_rank_true(failure is not None, context.device):
            if failure is not None:
                raise failure
            raise RuntimeError(f"the evaluation at step {at_state.step} failed on rank 0 (its error is in its log)")
        return record

    progress = ProgressBar(total_steps=total_steps, initial_step=state.step,
                           enabled=context.is_main and config.logging.progress_bar)
    last_eval: dict[str, Any] | None = None
    last_eval_step = last_saved_step = -1
    loss_value = None
    skips = SkipCounter(total=state.skipped_samples, epoch_skipped=state.epoch_skipped_samples,
                        epoch_drawn=state.epoch_samples_drawn)
    iterator = iter(loader)
    try:
        while state.step < total_steps:
            step_start = time.perf_counter()
            batches, data_error = _read_batches(iterator, accum)
            data_wait = time.perf_counter() - step_start
            skips.record_step(batches, data_error, context.device)  # raises on every rank if any rank's read failed
            state.skipped_samples, state.epoch_skipped_samples, state.epoch_samples_drawn = skips.counts()
            if hooks.after_batches is not None:
                hooks.after_batches(state.step, batches)
            micro_batches = [MicroBatch(batch["images"].to(context.device, non_blocking=True),
                                        batch["tokens"].to(context.device, non_blocking=True)) for batch in batches]

            step_index = state.step
            set_lr(optimizer, learning_rate(step_index, total_steps, config.optim))

            def forward(images, tokens):
                with autocast():
                    return train_model(images, tokens)

            def loss_of(model_output) -> LossOutput:
                result = compute_loss(loss_fn, model_output, objectives)
                return hooks.modify_loss(step_index, result) if hooks.modify_loss else result

            def backward(total: torch.Tensor) -> None:
                (scaler.scale(total) if scaler is not None else total).backward()

            optimizer.zero_grad(set_to_none=True)
            output = forward_backward(micro_batches, forward=forward, compute_loss=loss_of, backward=backward,
                                      no_sync=getattr(train_model, "no_sync", contextlib.nullcontext),
                                      device=context.device)
            if scaler is not None:
                scaler.unscale_(optimizer)
            grad_norm = builders.clip_gradients(trainable, config.optim.grad_clip_norm)
            skip = guard.should_skip(output.total, None if scaler is not None else grad_norm, context.device)
            if not skip:
                (scaler.step(optimizer) if scaler is not None else optimizer.step())
                clamp_logit_scale_(model, config.loss.max_logit_scale)
            if scaler is not None:
                scaler.update()
            if skip:
                optimizer.zero_grad(set_to_none=True)
                progress.write(f"step {step_index + 1}: non-finite loss or gradient, step skipped "
                               f"({guard.consecutive + 1} in a row)")
            state.step += 1
            state.samples_seen += global_micro_batch * accum
            state.batch_in_epoch += accum
            guard.record(skip, state.step)
            state.nonfinite_skips, state.consecutive_nonfinite = guard.total_skips, guard.consecutive
            epoch_done = state.batch_in_epoch + accum > num_batches
            epoch_of_step = state.epoch
            if epoch_done:
                state.epoch += 1
                state.batch_in_epoch = 0
            if hooks.after_step is not None:
                hooks.after_step(state.step, model)

            step_time = time.perf_counter() - step_start
            loss_value = float(output.total)
            progress.update(loss=loss_value, samples_per_s=global_micro_batch * accum / step_time, epoch=epoch_of_step)
            if state.step % config.logging.log_every_n_steps == 0 or state.step == total_steps:
                record = {"kind": "train", "step": state.step, "epoch": epoch_of_step,
                          "samples_seen": state.samples_seen, "lr": optimizer.param_groups[0]["lr"],
                          "loss": loss_value}
                record.update({f"loss/{name}": float(value) for name, value in output.terms.items()})
                if output.metrics is not None:
                    metrics = output.metrics.as_floats()
                    record.update(logit_scale=metrics["logit_scale"], i2t_accuracy=metrics["i2t_accuracy"],
                                  t2i_accuracy=metrics["t2i_accuracy"],
                                  local_batch_size=int(metrics["local_batch_size"]),
                                  global_batch_size=int(metrics["global_batch_size"]))
                record.update(data_wait_s=data_wait, step_time_s=step_time,
                              samples_per_s=global_micro_batch * accum / step_time,
                              skipped_samples=state.skipped_samples, nonfinite_skips=state.nonfinite_skips,
                              grad_norm=float(grad_norm) if grad_norm is not None else None)
                logger.log(record)
            if epoch_done or state.step == total_steps:  # the epoch's skip counts (so far, when the run ends mid-epoch)
                data_record = skips.report_epoch(loader.stats.examples, epoch_over=epoch_done)
                state.skipped_samples, state.epoch_skipped_samples, state.epoch_samples_drawn = skips.counts()
                logger.log({"kind": "data", "step": state.step, "epoch": epoch_of_step, **data_record})
                if data_record["skipped_samples"]:
                    progress.write(f"epoch {epoch_of_step}: skipped {data_record['skipped_samples']} bad of "
                                   f"{data_record['samples_drawn']} samples drawn: "
                                   + "; ".join(data_record["skipped_examples"][:3]))

            finished = state.step >= total_steps
            # Save before evaluating, so a failing evaluation cannot lose the weights just trained.
            save_due = (
                (config.checkpoint.save_every_steps and state.step % config.checkpoint.save_every_steps == 0)
                or (epoch_done and config.checkpoint.save_frequency
                    and state.epoch % config.checkpoint.save_frequency == 0)
                or finished
            )
            if save_due and last_saved_step != state.step:
                save(state)
                last_saved_step = state.step
            if epoch_done and config.eval.zeroshot_frequency and state.epoch % config.eval.zeroshot_frequency == 0:
                last_eval, last_eval_step = run_eval(state), state.step
            if finished and config.evaluates_at_end and last_eval_step != state.step:
                last_eval, last_eval_step = run_eval(state), state.step
            if epoch_done and not finished:
                loader, num_batches = load_epoch(state.epoch, 0)
                iterator = iter(loader)
    finally:
        progress.close()
        logger.close()

    summary = {
        "run_dir": str(run_dir),
        "steps": state.step,
        "epochs": state.epoch,
        "samples_seen": state.samples_seen,
        "skipped_samples": state.skipped_samples,
        "nonfinite_skips": state.nonfinite_skips,
        "wall_seconds": time.perf_counter() - wall_start,
        "world_size": context.world_size,
        "final_loss": loss_value if total_steps > 0 else None,
        "checkpoint": str(checkpoints.latest()) if context.is_main else None,
    }
    if last_eval is not None:
        summary.update({key: value for key, value in last_eval.items() if key not in ("kind", "step", "epoch")})
    if context.is_main:
        with open(run_dir / SUMMARY_FILE, "w") as handle:
            json.dump(summary, handle, indent=2)
            handle.write("\n")
        evaluation = ""
        if "zero_shot_top1" in summary:
            evaluation = f"; zero-shot top-1 {summary['zero_shot_top1']:.4f}, top-5 {summary['zero_shot_top5']:.4f}"
        elif "image_to_text_R@1" in summary:  # data without classes: retrieval only
            evaluation = (f"; retrieval R@1 image-to-text {summary['image_to_text_R@1']:.4f}, "
                          f"text-to-image {summary['text_to_image_R@1']:.4f}")
        print(f"done: {state.step} steps, {state.samples_seen} samples in {summary['wall_seconds']:.0f} s"
              + evaluation + f"; summary in {run_dir / SUMMARY_FILE}")
    return TrainResult(run_dir=run_dir, summary=summary)

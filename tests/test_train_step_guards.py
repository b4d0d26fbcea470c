"""Non-finite guard: a NaN step leaves parameters bitwise unchanged; K in a row stop the run."""

import pytest
import torch

from cliplab.distributed.launch import run_on_workers
from cliplab.models import create_model
from cliplab.train import NonFiniteLossError, TrainHooks, train
from cliplab.train.checkpointing.manager import CheckpointManager, restore_training_state
from cliplab.train.state import TrainState
from cliplab.train.step.accumulation import LossOutput
from cliplab.train.step.guards import NonFiniteGuard

from train_helpers import SMALL_MODEL, small_config


def test_guard_counts_in_the_train_state_and_stops_after_k_in_a_row():
    guard = NonFiniteGuard(3)
    assert guard.should_skip(torch.tensor(float("nan")), None)
    assert guard.should_skip(torch.tensor(1.0), torch.tensor(float("inf")))
    assert not guard.should_skip(torch.tensor(1.0), torch.tensor(2.0))
    state = TrainState()
    for skipped in (True, False, True, True):
        state.step += 1
        guard.record(state, skipped)
    assert (state.nonfinite_skips, state.consecutive_nonfinite) == (3, 2)
    state.step += 1
    with pytest.raises(NonFiniteLossError, match=r"3 consecutive steps \(up to step 5\)"):
        guard.record(state, True)


def _poison(steps, rank=None):
    def modify(step, output: LossOutput) -> LossOutput:
        if step in steps and (rank is None or torch.distributed.get_rank() == rank):
            return LossOutput(output.total * float("nan"), output.terms, output.metrics)
        return output
    return modify


def _snapshots():
    snapshots = {}

    def after_step(step, model):
        snapshots[step] = {name: p.detach().clone() for name, p in model.named_parameters()}
    return snapshots, after_step


def test_nan_step_is_skipped_bitwise(tmp_path):
    snapshots, after_step = _snapshots()
    result = train(small_config(tmp_path, steps=4), hooks=TrainHooks(modify_loss=_poison({2}), after_step=after_step))
    assert result.summary["nonfinite_skips"] == 1
    assert all(torch.equal(snapshots[3][n], snapshots[2][n]) for n in snapshots[2])  # step 3 was skipped
    assert not all(torch.equal(snapshots[4][n], snapshots[3][n]) for n in snapshots[3])  # and training goes on
    assert all(torch.isfinite(p).all() for p in snapshots[4].values())


def test_k_nonfinite_steps_in_a_row_abort_keeping_last_good_checkpoint(tmp_path):
    config = small_config(tmp_path, steps=10)
    config.guards.max_nonfinite_steps = 2
    config.checkpoint.save_every_steps = 2
    snapshots, after_step = _snapshots()
    with pytest.raises(NonFiniteLossError, match="2 consecutive"):
        train(config, hooks=TrainHooks(modify_loss=_poison({3, 4, 5}), after_step=after_step))
    manager = CheckpointManager(tmp_path / "run" / "checkpoints", keep=2)
    latest = manager.latest()
    assert latest.name == "step_0000004"  # saved after the first skipped step, with the step-3 weights
    model = create_model("tiny", **SMALL_MODEL)
    state = restore_training_state(latest, model=model)
    assert state.nonfinite_skips == 1
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, snapshots[3][name]), name


def _two_rank_nan_on_one_rank(rank, world_size, logs):
    snapshots, after_step = _snapshots()
    config = small_config(logs, name="ddp-nan", steps=3, batch_size=4)
    result = train(config, hooks=TrainHooks(modify_loss=_poison({1}, rank=1), after_step=after_step))
    return result.summary["nonfinite_skips"], snapshots


def test_all_ranks_agree_to_skip(tmp_path):
    results = run_on_workers(_two_rank_nan_on_one_rank, 2, str(tmp_path), timeout_s=240)
    (skips0, snaps0), (skips1, snaps1) = results
    assert skips0 == skips1 == 1
    for step in (1, 2, 3):
        assert all(torch.equal(snaps0[step][n], snaps1[step][n]) for n in snaps0[step])
    assert all(torch.equal(snaps0[2][n], snaps0[1][n]) for n in snaps0[1])

"""The checkpointer's rule of when a checkpoint is due, and what a resume into other shapes says."""

import pytest

from cliplab.cli import main
from cliplab.train.checkpointing.checkpointer import Checkpointer
from cliplab.train.config import CheckpointConfig
from cliplab.train.state import TrainState

from train_helpers import SMALL_MODEL


def _due_steps(config, *, steps, epoch_every, total):
    checkpointer = Checkpointer(config, manager=None, parts=None, saved_config={})
    due, state = [], TrainState()
    for _ in range(steps):
        state.step += 1
        epoch_done = state.step % epoch_every == 0
        state.epoch += epoch_done
        if checkpointer.is_due(state, epoch_done=epoch_done, finished=state.step == total):
            due.append(state.step)
    return due


@pytest.mark.parametrize("config, expected", [
    (CheckpointConfig(save_frequency=0), [10]),  # the end of the run only
    (CheckpointConfig(save_frequency=1), [3, 6, 9, 10]),  # every epoch (3 steps) and the end
    (CheckpointConfig(save_frequency=2), [6, 10]),
    (CheckpointConfig(save_frequency=0, save_every_steps=4), [4, 8, 10]),
])
def test_due_every_n_steps_every_n_epochs_and_at_the_end(config, expected):
    assert _due_steps(config, steps=10, epoch_every=3, total=10) == expected


# --- resuming a checkpoint into a model of other shapes -----------------------------------------


def _small_run_argv(logs, *overrides, fsdp=False):
    model = "{" + ", ".join(f"{k}: {v}" for k, v in {**SMALL_MODEL, **dict(overrides)}.items()) + "}"
    return ["train", "--logs", str(logs), "--name", "run", "--max-steps", "2", "--batch-size", "8",
            "--train-num-samples", "64", "--workers", "0", "--threads", "1", "--no-progress-bar", "--no-tensorboard",
            "--set", f"model.overrides={model}", "--set", "eval.eval_at_end=false", *(["--fsdp"] if fsdp else [])]


@pytest.mark.parametrize("fsdp", [False, True], ids=["single-file", "dcp-shards"])
def test_resuming_into_other_shapes_is_one_line_naming_the_first_mismatched_tensors(tmp_path, capsys, fsdp):
    # Before: a 47-line traceback from load_state_dict (single file) or from DCP's planner (shards).
    assert main(_small_run_argv(tmp_path, fsdp=fsdp)) == 0
    capsys.readouterr()
    code = main(_small_run_argv(tmp_path, ("embed_dim", 24), fsdp=fsdp)
                + ["--resume", "latest", "--allow-config-change", "model.overrides"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    checkpoint = tmp_path / "run" / "checkpoints" / "step_0000002"
    assert err == (f"cliplab train: error: checkpoint {checkpoint} does not match the architecture: 2 mis-shaped: "
                   "image_projection.weight is [16, 16], expected [24, 16], text_projection.weight is [16, 32], "
                   "expected [24, 32] (checkpoint first, then this run's model); resume it with the model it was "
                   "trained with (--model, --set model.overrides=...)\n")

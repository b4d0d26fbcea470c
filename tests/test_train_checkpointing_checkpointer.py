"""The checkpointer's rule of when a checkpoint is due."""

import pytest

from cliplab.train.checkpointing.checkpointer import Checkpointer
from cliplab.train.config import CheckpointConfig
from cliplab.train.state import TrainState


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

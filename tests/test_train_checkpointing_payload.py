"""train_state.pt: written from one payload builder, read weights-only (a `__reduce__` payload runs
nothing and fails in one line naming the file), RNG states restored bit for bit, and a file in the
format written before (a NumPy array in the RNG state) still read."""

import pickle
import random
import re

import numpy as np
import pytest
import torch

from cliplab.errors import UserError
from cliplab.train.checkpointing.payload import read_train_state, rng_state, set_rng_state, training_payload
from cliplab.train.state import TrainState
from hostile_files import RunsCode


def _payload():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.8, 0.9))
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    heads = torch.nn.Linear(2, 2)
    return training_payload(state=TrainState(step=3, epoch=1, samples_seen=24), scaler=torch.amp.GradScaler("cpu"),
                            rng_states=[rng_state(), rng_state()], config={"loop": {"seed": 1, "lr": None}},
                            optimizer=optimizer, extra_modules={"objectives": heads})


def test_the_payload_round_trips_weights_only_and_replays_every_generator(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    payload = _payload()
    torch.save(payload, tmp_path / "train_state.pt")
    expected = (random.random(), np.random.rand(3), torch.rand(3))
    read = read_train_state(tmp_path / "train_state.pt")
    assert read.keys() == {"train_state", "scaler", "rng", "config", "optimizer", "extra_modules"}
    assert read["train_state"] == payload["train_state"] and read["config"] == payload["config"]
    assert read["optimizer"]["param_groups"] == payload["optimizer"]["param_groups"]
    set_rng_state(read["rng"][0])  # the state before the three draws above
    assert (random.random(), *np.random.rand(3), *torch.rand(3)) == (expected[0], *expected[1], *expected[2])


def test_a_file_written_before_the_tensor_key_still_loads_and_replays(tmp_path):
    np.random.seed(5)
    legacy = rng_state()
    legacy["numpy"] = np.random.get_state()  # what train_state.pt held before: a uint32 array
    torch.save({**_payload(), "rng": [legacy]}, tmp_path / "train_state.pt")
    expected = np.random.rand(4)
    set_rng_state(read_train_state(tmp_path / "train_state.pt")["rng"][0])
    assert np.array_equal(np.random.rand(4), expected)


@pytest.mark.parametrize("where", ["whole file", "inside the optimizer state", "inside the rng states"])
def test_a_code_running_pickle_runs_nothing_and_is_one_line_naming_the_file(tmp_path, where):
    marker = tmp_path / "ran"
    payload = _payload()
    if where == "whole file":
        payload = RunsCode(marker)
    elif where == "inside the optimizer state":
        payload["optimizer"]["state"][0]["exp_avg"] = RunsCode(marker)
    else:
        payload["rng"][1]["numpy"] = RunsCode(marker)
    path = tmp_path / "train_state.pt"
    torch.save(payload, path)
    with pytest.raises(UserError) as refused:
        read_train_state(path)
    assert not marker.exists()
    assert str(refused.value) == (f"{path}: not a training state cliplab reads without running code (UnpicklingError: "
                                  "Trying to load unsupported GLOBAL posix.system whose module posix is blocked)")


@pytest.mark.parametrize("content, message", [
    (lambda path: path.write_bytes(pickle.dumps(RunsCode(path.parent / "ran"))), "not a training state cliplab reads"),
    (lambda path: path.write_bytes(b"PK\x03\x04 not a zip"), "not a training state cliplab reads"),
    (lambda path: torch.save([1, 2], path), "expected a training state (a dict), got list"),
    (lambda path: torch.save({"train_state": {}, "rng": [], "config": None}, path),
     "the training state lacks its 'config' section (a dict)"),
])
def test_other_files_in_its_place_are_one_line(tmp_path, content, message):
    path = tmp_path / "train_state.pt"
    content(path)
    with pytest.raises(UserError, match=re.escape(message)) as refused:
        read_train_state(path)
    assert str(refused.value).startswith(f"{path}: ") and "\n" not in str(refused.value)
    assert not (tmp_path / "ran").exists()

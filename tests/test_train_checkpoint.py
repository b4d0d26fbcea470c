"""Checkpoints: bitwise round trip, `latest` pointer, pruning, torn saves (simulated and SIGKILL)."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from cliplab.data.tokenizer import Tokenizer
from cliplab.distributed.launch import run_on_workers
from cliplab.models import create_model
from cliplab.train import checkpoint as checkpoint_module
from cliplab.train.checkpoint import CheckpointManager, restore_training_state
from cliplab.train.config import OptimConfig
from cliplab.train.optim import build_optimizer
from cliplab.train.state import TrainState


def _tiny_setup(seed=0):
    torch.manual_seed(seed)
    model = create_model("tiny", output_dict=True, **{"vision.width": 16, "text.width": 32, "text.heads": 2, "text.layers": 1,
                                    "text.vocab_size": 300})
    tokenizer = Tokenizer.train(["a photo of a cat", "a photo of a dog"], vocab_size=300,
                                context_length=model.config.text.context_length)
    optimizer = build_optimizer(model, OptimConfig())
    images, tokens = torch.randn(4, 3, 28, 28), tokenizer(["a cat", "a dog", "a cat", "a dog"])
    out = model(images, tokens)
    (out["image_features"] @ out["text_features"].T).sum().backward()
    optimizer.step()
    return model, tokenizer, optimizer


def _save(manager, model, tokenizer, optimizer, step):
    return manager.save(model=model, tokenizer=tokenizer, optimizer=optimizer, scaler=None,
                        state=TrainState(step=step, epoch=1, batch_in_epoch=3), config={})


def test_round_trip_is_bitwise_and_restores_rng(tmp_path):
    model, tokenizer, optimizer = _tiny_setup()
    manager = CheckpointManager(tmp_path, keep=2)
    torch.manual_seed(123)
    path = _save(manager, model, tokenizer, optimizer, step=7)
    expected_draw = torch.rand(3)
    assert manager.latest() == path and path.name == "step_0000007"

    fresh, _, fresh_optimizer = _tiny_setup(seed=1)
    state = restore_training_state(path, model=fresh, optimizer=fresh_optimizer)
    assert (state.step, state.epoch, state.batch_in_epoch) == (7, 1, 3)
    for (name, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), name
    for a, b in zip(optimizer.state_dict()["state"].values(), fresh_optimizer.state_dict()["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(torch.rand(3), expected_draw)


def test_skip_counters_round_trip_and_older_checkpoints_load_with_zeros(tmp_path):
    model, tokenizer, optimizer = _tiny_setup()
    state = TrainState(step=4, skipped_samples=9, epoch_skipped_samples=2, epoch_samples_drawn=130)
    path = CheckpointManager(tmp_path, keep=2).save(model=model, tokenizer=tokenizer, optimizer=optimizer,
                                                    scaler=None, state=state, config={})
    assert restore_training_state(path, model=model) == state
    payload = torch.load(path / checkpoint_module.TRAIN_STATE_FILE, weights_only=False)
    del payload["train_state"]["epoch_skipped_samples"], payload["train_state"]["epoch_samples_drawn"]
    torch.save(payload, path / checkpoint_module.TRAIN_STATE_FILE)  # as written before the counters
    restored = restore_training_state(path, model=model)
    assert (restored.skipped_samples, restored.epoch_skipped_samples, restored.epoch_samples_drawn) == (9, 0, 0)


def test_keeps_the_newest_k(tmp_path):
    model, tokenizer, optimizer = _tiny_setup()
    manager = CheckpointManager(tmp_path, keep=2)
    for step in (1, 2, 3, 4):
        _save(manager, model, tokenizer, optimizer, step)
    assert [p.name for p in manager.step_dirs()] == ["step_0000003", "step_0000004"]
    assert manager.latest().name == "step_0000004"


def test_crash_before_rename_or_before_pointer_keeps_previous(tmp_path, monkeypatch):
    model, tokenizer, optimizer = _tiny_setup()
    manager = CheckpointManager(tmp_path, keep=3)
    good = _save(manager, model, tokenizer, optimizer, 1)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    # Killed while writing train_state.pt into the temporary directory.
    monkeypatch.setattr(checkpoint_module.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        _save(manager, model, tokenizer, optimizer, 2)
    monkeypatch.undo()
    assert manager.latest() == good
    # Killed after the rename, before `latest` moved.
    monkeypatch.setattr(checkpoint_module, "write_text_atomic", crash)
    with pytest.raises(KeyboardInterrupt):
        _save(manager, model, tokenizer, optimizer, 3)
    monkeypatch.undo()
    assert manager.latest() == good
    restore_training_state(manager.latest(), model=model)
    # The next save clears the leftovers and succeeds.
    assert _save(manager, model, tokenizer, optimizer, 3) == manager.latest()
    assert not list(tmp_path.glob(".tmp-*"))


SAVER = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {tests!r})
    from test_train_checkpoint import _tiny_setup, _save
    from cliplab.train.checkpoint import CheckpointManager
    model, tokenizer, optimizer = _tiny_setup()
    manager = CheckpointManager({directory!r}, keep=2)
    step = 0
    while True:
        step += 1
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.fill_(float(step))
        _save(manager, model, tokenizer, optimizer, step)
        print(step, flush=True)
""")


def test_sigkill_during_saves_leaves_a_loadable_latest(tmp_path):
    directory = tmp_path / "checkpoints"
    script = SAVER.format(tests=os.path.dirname(__file__), directory=str(directory))
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(3):  # let a few saves complete, then kill at an arbitrary point of the next one
            assert process.stdout.readline(), "saver died"
        time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    manager = CheckpointManager(directory, keep=2)
    latest = manager.latest()
    assert latest is not None
    model, _, optimizer = _tiny_setup(seed=5)
    state = restore_training_state(latest, model=model, optimizer=optimizer)
    assert all(torch.all(p == float(state.step)) for p in model.parameters())


def _save_on_ranks(rank, world_size, directory):
    """Two saves on every rank: one that works, then one whose write (rank 0's) fails."""
    model, tokenizer, optimizer = _tiny_setup()
    outcomes = [str(_save(CheckpointManager(Path(directory) / "checkpoints", keep=2), model, tokenizer, optimizer, 1))]
    try:
        _save(CheckpointManager(Path(directory) / "blocked", keep=2), model, tokenizer, optimizer, 2)
    except Exception as error:  # noqa: BLE001 - compared across ranks below
        outcomes.append((type(error).__name__, str(error)))
    return outcomes


def test_a_failed_write_on_rank_0_stops_every_rank_with_its_cause(tmp_path):
    """Only rank 0 writes; before, rank 1 went on into the next step's collectives and waited there
    until the process-group timeout."""
    (tmp_path / "blocked").write_text("a file where the checkpoint directory should be\n")
    start = time.monotonic()
    rank0, rank1 = run_on_workers(_save_on_ranks, 2, str(tmp_path), timeout_s=60)
    assert time.monotonic() - start < 60
    assert rank0[0] == rank1[0] == str(tmp_path / "checkpoints" / "step_0000001")  # the path on every rank
    assert rank0[1] == rank1[1] and rank0[1][0] == "FileExistsError" and str(tmp_path / "blocked") in rank0[1][1]

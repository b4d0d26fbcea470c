"""Kill-resume exactness: SIGKILL a real `cliplab train` after a checkpoint, resume, compare bitwise.

Checkpoint every 3 steps; the run is killed once step k > c has been logged (c: the newest complete
checkpoint then), resumed with --resume latest, and must end with the parameters, optimiser state
and logged losses of steps c+1..N equal (torch.equal / ==) to an uninterrupted run's. With 0 and 2
data workers; the reference run uses 0 workers, so the comparison also shows the worker count
does not change the batches.
"""

import json
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from cliplab.train import TrainHooks, train
from cliplab.train.checkpointing.manager import CheckpointManager

from train_helpers import (SMALL_MODEL, assert_same_final_checkpoint, logged_losses, sigkill_after_a_checkpoint,
                           small_config)

STEPS = 30


def _command(logs, name, workers, resume=False):
    # text dropout on: the resumed run must replay each step's dropout masks from the saved RNG.
    overrides = "{" + ", ".join(f"{k}: {v}" for k, v in {**SMALL_MODEL, "text.dropout": 0.1}.items()) + "}"
    command = [sys.executable, "-m", "cliplab", "train", "--logs", str(logs), "--name", name,
               "--max-steps", str(STEPS), "--batch-size", "8", "--train-num-samples", "128", "--epochs", "10",
               "--workers", str(workers), "--save-every-steps", "3", "--keep-checkpoints", "2",
               "--log-every-n-steps", "1", "--no-progress-bar", "--no-tensorboard", "--threads", "1",
               "--deterministic", "--warmup", "2", "--set", f"model.overrides={overrides}",
               "--set", "eval.eval_at_end=false"]
    return command + (["--resume", "latest"] if resume else [])


def _run(command, **kwargs):
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert completed.returncode == 0, completed.stderr[-3000:]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    logs = tmp_path_factory.mktemp("reference")
    _run(_command(logs, "ref", workers=0))
    return logs / "ref"


@pytest.mark.parametrize("workers", [0, 2])
def test_sigkill_then_resume_matches_uninterrupted_run(reference, tmp_path, workers):
    run_dir = tmp_path / "killed"
    process = subprocess.Popen(_command(tmp_path, "killed", workers), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    checkpoint_at, killed_at = sigkill_after_a_checkpoint(process, run_dir)
    assert checkpoint_at < killed_at < STEPS

    _run(_command(tmp_path, "killed", workers, resume=True))

    assert_same_final_checkpoint(run_dir, reference, steps=STEPS)
    losses, reference_losses = logged_losses(run_dir), logged_losses(reference)
    assert sorted(losses) == list(range(1, STEPS + 1))  # lines after the checkpoint were rewritten, once
    for step in range(checkpoint_at + 1, STEPS + 1):
        assert losses[step] == reference_losses[step], step


def test_resume_latest_without_checkpoint_starts_fresh(tmp_path):
    command = _command(tmp_path, "fresh", workers=0, resume=True)
    command[command.index("--max-steps") + 1] = "2"
    _run(command)
    assert sorted(logged_losses(tmp_path / "fresh")) == [1, 2]


def _equal_rng_states(a, b):
    """Python, NumPy and torch generator states of every rank, compared exactly."""
    assert len(a) == len(b)
    for state, reference_state in zip(a, b):
        assert state["python"] == reference_state["python"]
        assert all(np.array_equal(x, y) for x, y in zip(state["numpy"], reference_state["numpy"]))
        assert torch.equal(state["torch"], reference_state["torch"])


@pytest.mark.slow
def test_kills_at_random_moments_and_during_saves_resume_to_the_uninterrupted_run(reference, tmp_path):
    """SIGKILL the run (2 data workers) again and again, alternately at a random step and while a
    checkpoint is being written, resuming with --resume latest each time, until it finishes; the
    end must be the uninterrupted run's, bit for bit: weights, optimiser, RNG states, counters and
    every logged loss, each step logged once."""
    chooser = random.Random(14)
    run_dir, checkpoints = tmp_path / "killed", tmp_path / "killed" / "checkpoints"
    kills = {"during a save": 0, "at a random step": 0}
    for attempt in range(20):
        moment = "during a save" if attempt % 2 else "at a random step"
        logged_before = max(logged_losses(run_dir), default=0) if (run_dir / "metrics.jsonl").exists() else 0
        kill_after = logged_before + chooser.randint(1, 6)
        process = subprocess.Popen(_command(tmp_path, "killed", workers=2, resume=True), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.time() + 240
            while time.time() < deadline and process.poll() is None and sum(kills.values()) < 8:
                if moment == "during a save":
                    due = checkpoints.is_dir() and any(checkpoints.glob(".tmp-step_*"))
                else:
                    due = (run_dir / "metrics.jsonl").exists() and max(logged_losses(run_dir), default=0) >= kill_after
                if due:
                    process.send_signal(signal.SIGKILL)
                    kills[moment] += 1
                    break
                time.sleep(0.002)
            process.wait(timeout=240)
        finally:
            process.kill()
            process.wait()
        if process.returncode == 0:
            break
        assert process.returncode == -signal.SIGKILL, process.stderr.read()[-3000:]
    assert process.returncode == 0, "the run never finished"
    assert kills["during a save"] >= 2 and sum(kills.values()) >= 5, kills

    assert_same_final_checkpoint(run_dir, reference, steps=STEPS)
    final = CheckpointManager(checkpoints, keep=2).latest()
    reference_final = CheckpointManager(reference / "checkpoints", keep=2).latest()
    _equal_rng_states(torch.load(final / "train_state.pt", weights_only=False)["rng"],
                      torch.load(reference_final / "train_state.pt", weights_only=False)["rng"])
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in lines if record["kind"] == "train"] == list(range(1, STEPS + 1))
    assert logged_losses(run_dir) == logged_losses(reference)


# --- in-process: what resume completes, falls back to and drops ---------------------------------


class Interrupted(Exception):
    """Stands in for a kill: the run stops where it is raised."""


def _train_records(run_dir, kind="train"):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if record["kind"] == kind]


def _saving_config(logs, name, *, steps=6, resume=None, evaluate=False):
    config = small_config(logs, name=name, steps=steps, evaluate=evaluate, deterministic=True)
    config.checkpoint.save_every_steps = 2
    config.checkpoint.keep_checkpoints = 3
    config.checkpoint.resume = resume
    return config


def test_a_corrupt_newest_checkpoint_and_no_pointer_resume_from_the_one_before(tmp_path, capsys):
    reference = train(_saving_config(tmp_path, "reference")).run_dir
    damaged = shutil.copytree(reference, tmp_path / "damaged")
    checkpoints = damaged / "checkpoints"
    weights = bytearray((checkpoints / "step_0000006" / "model.safetensors").read_bytes())
    weights[len(weights) // 2] ^= 0x01
    (checkpoints / "step_0000006" / "model.safetensors").write_bytes(bytes(weights))
    (checkpoints / "latest").unlink()
    capsys.readouterr()

    train(_saving_config(tmp_path, "damaged", resume="latest"))

    out = capsys.readouterr().out
    assert (f"skipping checkpoint {checkpoints / 'step_0000006'}: it has model.safetensors with another SHA-256 "
            "than its manifest's (the file changed after it was written: corrupt)\n") in out
    assert f"{checkpoints / 'latest'} is missing; resuming from the newest checkpoint that verifies, step_0000004" in out
    assert f"resuming from {checkpoints / 'step_0000004'} (step 4," in out
    assert_same_final_checkpoint(damaged, reference, steps=6)
    assert sorted(path.name for path in checkpoints.iterdir()) == [  # nothing lost, the damaged one set aside
        "latest", "rejected_step_0000006", "step_0000002", "step_0000004", "step_0000006"]
    assert [record["step"] for record in _train_records(damaged)] == [1, 2, 3, 4, 5, 6]


def test_a_crash_before_the_first_checkpoint_leaves_one_line_per_step(tmp_path):
    # Before: the restarted run appended steps 1-7 again after the first attempt's (185 lines for 150 steps).
    config = small_config(tmp_path, name="run", steps=5)
    config.checkpoint.resume = "latest"
    config.logging.tensorboard = True

    def crash(step, model):  # after step 4, before its line
        if step == 4:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(config, hooks=TrainHooks(after_step=crash))
    assert [record["step"] for record in _train_records(tmp_path / "run")] == [1, 2, 3]
    assert not (tmp_path / "run" / "checkpoints").exists()

    train(config)

    records = _train_records(tmp_path / "run")
    assert [record["step"] for record in records] == [1, 2, 3, 4, 5]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()  # honours the purge_step the restarted run wrote
    assert [(event.step, event.value) for event in events.Scalars("train/loss")] == [
        (record["step"], pytest.approx(record["loss"], rel=1e-6)) for record in records]  # float32 in TensorBoard


def test_a_run_killed_during_its_final_evaluation_completes_it_on_resume(tmp_path, monkeypatch):
    # Before: the resumed run said "done" with no evaluation, final_loss null and no zero_shot_top1.
    import cliplab.train.evaluation as evaluation

    evaluate = evaluation.evaluate

    def killed(*args, **kwargs):
        raise Interrupted

    config = small_config(tmp_path, name="run", steps=2, evaluate=True)
    config.checkpoint.resume = "latest"
    monkeypatch.setattr(evaluation, "evaluate", killed)
    with pytest.raises(Interrupted):
        train(config)
    assert not (tmp_path / "run" / "summary.json").exists()
    monkeypatch.setattr(evaluation, "evaluate", evaluate)

    summary = train(config).summary

    (last_step,), (final_eval,) = _train_records(tmp_path / "run")[-1:], _train_records(tmp_path / "run", "eval")
    assert (last_step["step"], final_eval["step"]) == (2, 2)
    assert summary["final_loss"] == last_step["loss"]
    assert summary["zero_shot_top1"] == final_eval["zero_shot_top1"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == summary
    # Resumed once more, with the evaluation logged: nothing is owed, nothing is evaluated again.
    monkeypatch.setattr(evaluation, "evaluate", killed)
    again = train(config).summary
    assert {**again, "wall_seconds": 0} == {**summary, "wall_seconds": 0}
    assert len(_train_records(tmp_path / "run", "eval")) == 1

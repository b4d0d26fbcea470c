"""Kill-resume exactness: SIGKILL a real `cliplab train` after a checkpoint, resume, compare bitwise.

Checkpoint every 3 steps; the run is killed once step k > c has been logged (c: the newest complete
checkpoint then), resumed with --resume latest, and must end with the parameters, optimiser state
and logged losses of steps c+1..N equal (torch.equal / ==) to an uninterrupted run's. With 0 and 2
data workers; the reference run uses 0 workers, so the comparison also shows the worker count
does not change the batches.
"""

import json
import signal
import subprocess
import sys
import time

import pytest

from cliplab.train.checkpoint import CheckpointManager

from train_helpers import SMALL_MODEL, assert_same_final_checkpoint

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


def _losses(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if r["kind"] == "train"}


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
    killed_at = checkpoint_at = None
    try:
        deadline = time.time() + 240
        while time.time() < deadline and process.poll() is None:
            latest = CheckpointManager(run_dir / "checkpoints", keep=2).latest() if (run_dir / "checkpoints").exists() else None
            logged = _losses(run_dir) if (run_dir / "metrics.jsonl").exists() else {}
            if latest is not None and logged and max(logged) > int(latest.name.split("_")[1]):
                process.send_signal(signal.SIGKILL)
                killed_at, checkpoint_at = max(logged), int(latest.name.split("_")[1])
                break
            time.sleep(0.005)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert checkpoint_at < killed_at < STEPS

    _run(_command(tmp_path, "killed", workers, resume=True))

    assert_same_final_checkpoint(run_dir, reference, steps=STEPS)
    losses, reference_losses = _losses(run_dir), _losses(reference)
    assert sorted(losses) == list(range(1, STEPS + 1))  # lines after the checkpoint were rewritten, once
    for step in range(checkpoint_at + 1, STEPS + 1):
        assert losses[step] == reference_losses[step], step


def test_resume_latest_without_checkpoint_starts_fresh(tmp_path):
    command = _command(tmp_path, "fresh", workers=0, resume=True)
    command[command.index("--max-steps") + 1] = "2"
    _run(command)
    assert sorted(_losses(tmp_path / "fresh")) == [1, 2]

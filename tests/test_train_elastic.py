"""Elastic restart (RELIABILITY item 8): under `torchrun --max-restarts=1`, one of two gloo workers
is SIGKILLed mid-run; torchrun restarts both, they resume from the newest checkpoint
(`--resume latest`), and the job ends with weights and optimiser state equal (torch.equal, CPU,
deterministic) to an uninterrupted torchrun job's.

The kill comes from tests/elastic_launcher.py (the CLI plus a TrainHooks.after_step that SIGKILLs
rank 0, the rank that writes checkpoints and metrics, after step KILL_AT on the first attempt only).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from train_helpers import SMALL_MODEL, assert_same_final_checkpoint

STEPS, SAVE_EVERY, KILL_AT = 8, 2, 5
LAUNCHER = Path(__file__).parent / "elastic_launcher.py"


def _torchrun(logs, name, kill_at=None):
    overrides = "{" + ", ".join(f"{k}: {v}" for k, v in {**SMALL_MODEL, "text.dropout": 0.1}.items()) + "}"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "--max-restarts", "1", "--monitor-interval", "0.1", str(LAUNCHER), "--",
               "train", "--logs", str(logs), "--name", name, "--resume", "latest",
               "--max-steps", str(STEPS), "--batch-size", "4", "--train-num-samples", "64", "--epochs", "10",
               "--workers", "0", "--threads", "1", "--deterministic", "--warmup", "2",
               "--save-every-steps", str(SAVE_EVERY), "--keep-checkpoints", "2", "--log-every-n-steps", "1",
               "--local-loss", "--gather-with-grad", "--no-progress-bar", "--no-tensorboard",
               "--set", f"model.overrides={overrides}", "--set", "eval.eval_at_end=false"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("CLIPLAB_TEST_")}
    if kill_at is not None:
        env.update(CLIPLAB_TEST_KILL_AT_STEP=str(kill_at), CLIPLAB_TEST_KILL_RANK="0")
    completed = subprocess.run(command, capture_output=True, text=True, timeout=400, env=env)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    return completed


@pytest.mark.slow
def test_killed_worker_restarts_and_ends_with_the_uninterrupted_weights(tmp_path):
    reference = _torchrun(tmp_path, "reference")
    assert "resuming from" not in reference.stdout
    killed = _torchrun(tmp_path, "killed", kill_at=KILL_AT)
    # The first attempt died (rank 0 by SIGKILL) and the second resumed from the last checkpoint.
    assert "failed (exitcode: -9) local_rank: 0" in killed.stderr, killed.stderr[-3000:]
    checkpoint_before_kill = KILL_AT - KILL_AT % SAVE_EVERY
    assert "resuming from" in killed.stdout and f"(step {checkpoint_before_kill}," in killed.stdout

    assert_same_final_checkpoint(tmp_path / "killed", tmp_path / "reference", steps=STEPS)
    records = [json.loads(line) for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, STEPS + 1))

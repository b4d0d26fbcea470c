"""End to end under torchrun: 2 gloo workers train, checkpoint (rank 0 only) and resume at start-up."""

import json
import socket
import subprocess
import sys

from cliplab.train.checkpointing.manager import CheckpointManager

from train_helpers import SMALL_MODEL


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(logs, max_steps):
    overrides = "{" + ", ".join(f"{k}: {v}" for k, v in SMALL_MODEL.items()) + "}"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), "-m", "cliplab",
               # the documented form: after `--` torchrun's parser does not mistake --logs for its --logs-specs
               "--", "train", "--name", "ddp", "--logs", str(logs),
               "--resume", "latest", "--max-steps", str(max_steps), "--allow-config-change", "loop.max_steps", "--batch-size", "4", "--train-num-samples", "64",
               "--workers", "0", "--threads", "1", "--save-every-steps", "2", "--log-every-n-steps", "1",
               "--local-loss", "--gather-with-grad", "--no-progress-bar", "--no-tensorboard",
               "--set", f"model.overrides={overrides}", "--set", "eval.eval_at_end=false"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    return completed.stdout


def test_torchrun_two_workers_then_restart_resumes(tmp_path):
    first = _torchrun(tmp_path, max_steps=2)
    assert first.count("cliplab train: run directory") == 1  # only rank 0 prints and logs
    manager = CheckpointManager(tmp_path / "ddp" / "checkpoints", keep=2)
    assert manager.latest().name == "step_0000002"
    # torchrun restarts every worker with the same command line: it must pick the checkpoint up.
    second = _torchrun(tmp_path, max_steps=4)
    assert "resuming from" in second
    assert manager.latest().name == "step_0000004"
    records = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4]
    assert all(r["global_batch_size"] == 8 and r["local_batch_size"] == 4 for r in records if r["kind"] == "train")

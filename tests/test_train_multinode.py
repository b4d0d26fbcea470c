"""The docs' multi-node recipe on one machine: two torchrun agents (`--nnodes 2 --node-rank 0/1`),
one worker each, meeting at a c10d rendezvous endpoint on 127.0.0.1, train as one run of 2 ranks."""

import json
import subprocess
import sys

import pytest

from test_train_torchrun import _free_port
from train_helpers import SMALL_MODEL


def _agent(logs, node_rank, endpoint, fsdp):
    overrides = "{" + ", ".join(f"{k}: {v}" for k, v in SMALL_MODEL.items()) + "}"
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node_rank),
               "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint,
               "--rdzv-id", "cliplab-test", "-m", "cliplab", "--", "train", "--name", "two_nodes", "--logs", str(logs),
               "--max-steps", "2", "--batch-size", "4", "--train-num-samples", "64", "--workers", "0", "--threads", "1",
               "--log-every-n-steps", "1", "--gather-with-grad", "--no-progress-bar", "--no-tensorboard", *(["--fsdp"] if fsdp else []),
               "--set", f"model.overrides={overrides}", "--set", "eval.eval_at_end=false"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("fsdp", [False, True])
def test_two_torchrun_agents_train_one_run(tmp_path, fsdp):
    endpoint = f"127.0.0.1:{_free_port()}"
    agents = [_agent(tmp_path, node_rank, endpoint, fsdp) for node_rank in (0, 1)]
    outputs = [agent.communicate(timeout=300) for agent in agents]
    for agent, (stdout, stderr) in zip(agents, outputs):
        assert agent.returncode == 0, stdout[-2000:] + stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "two_nodes" / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train_records] == [1, 2]
    assert all(r["global_batch_size"] == 8 and r["local_batch_size"] == 4 for r in train_records)
    summary = json.loads((tmp_path / "two_nodes" / "summary.json").read_text())
    assert summary["world_size"] == 2

"""FSDP2 training (`--fsdp`) against DDP with the same global batch, on real gloo processes.

The issue's bound: 40 fp32 steps give per-step losses within 1e-4 relative of DDP at the same N.
FSDP2 reduce-scatters where DDP all-reduces, so the gradients are sums in another order: equal to
fp32 rounding, which AdamW's division by sqrt(v) then carries into the losses (about 5e-5 relative
by step 40 between DDP runs at N = 1 and 2, the issue measured).
"""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from cliplab.bundle import load as load_bundle
from cliplab.distributed.launch import run_on_workers
from cliplab.train import train
from cliplab.train.checkpoint import CheckpointManager

from train_helpers import small_config

STEPS = 40
GLOBAL_BATCH = 8
LOSS_RTOL = 1e-4


def _config(logs, name, world_size, *, fsdp, steps=STEPS, **loop):
    config = small_config(logs, name=name, steps=steps, batch_size=GLOBAL_BATCH // world_size, **loop)
    config.data.train_num_samples = GLOBAL_BATCH * STEPS
    config.loss.gather_with_grad = True  # every rank computes (and logs) the loss of the whole global batch
    config.distributed.fsdp = fsdp
    config.checkpoint.save_every_steps = STEPS // 2
    return config


def _losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [record["loss"] for record in records if record["kind"] == "train"]


def _ddp_then_fsdp(rank, world_size, logs):
    """Both runs in the same processes (one start-up), then an FSDP2 run resumed half-way."""
    for name, fsdp in (("ddp", False), ("fsdp", True)):
        train(_config(logs, name, world_size, fsdp=fsdp))
    half = CheckpointManager(logs / "fsdp" / "checkpoints", keep=2).latest().parent / f"step_{STEPS // 2:07d}"
    resumed = _config(logs, "fsdp_resumed", world_size, fsdp=True)
    resumed.checkpoint.resume = str(half)
    train(resumed)
    from_ddp = _config(logs, "fsdp_from_ddp", world_size, fsdp=True)
    from_ddp.checkpoint.resume = str(logs / "ddp" / "checkpoints" / half.name)  # a single-file checkpoint
    train(from_ddp)


def _assert_close_losses(losses, reference):
    assert len(losses) == len(reference)
    for step, (loss, expected) in enumerate(zip(losses, reference), start=1):
        assert math.isclose(loss, expected, rel_tol=LOSS_RTOL), (step, loss, expected)


@pytest.mark.parametrize("world_size", [2, pytest.param(4, marks=pytest.mark.slow)])
def test_fsdp_follows_ddp_and_its_checkpoints_resume_it(tmp_path, world_size):
    run_on_workers(_ddp_then_fsdp, world_size, tmp_path, timeout_s=600)
    ddp, fsdp = _losses(tmp_path / "ddp"), _losses(tmp_path / "fsdp")
    assert len(ddp) == STEPS
    assert ddp[0] == fsdp[0]  # the same initial weights, the same first global batch
    _assert_close_losses(fsdp, ddp)
    # The sharded (DCP) checkpoint reads, in this process, as the unsharded model (0-d logit scale)
    # with DDP's values.
    checkpoints = [CheckpointManager(tmp_path / name / "checkpoints", keep=2).latest() for name in ("ddp", "fsdp")]
    ddp_weights = load_file(checkpoints[0] / "model.safetensors")
    model, _, _ = load_bundle(checkpoints[1])
    fsdp_weights = model.state_dict()
    assert fsdp_weights.keys() == ddp_weights.keys() and model.logit_scale.dim() == 0
    for name, value in ddp_weights.items():
        torch.testing.assert_close(fsdp_weights[name], value, rtol=1e-3, atol=1e-5, msg=name)
    # Resuming the FSDP2 run from its step-20 checkpoint replays its second half exactly (same machine).
    assert _losses(tmp_path / "fsdp_resumed") == fsdp[STEPS // 2:]
    # An FSDP2 run resumes from a DDP run's single-file checkpoint and follows the DDP run.
    _assert_close_losses(_losses(tmp_path / "fsdp_from_ddp"), ddp[STEPS // 2:])

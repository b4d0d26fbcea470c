"""Small configs shared by the training tests (a shrunken tiny model, a few steps, no eval), and the
kill of a `cliplab train` process once a step after a checkpoint is logged."""

import json
import signal
import time

import torch
from safetensors.torch import load_file

from cliplab.objectives.terms import OBJECTIVE_TERMS
from cliplab.train.checkpointing.manager import CheckpointManager
from cliplab.train.config import EvalConfig
from cliplab.train.config.presets import smoke_config

SMALL_MODEL = {"vision.width": 16, "text.width": 32, "text.heads": 2, "text.layers": 1,
               "text.context_length": 20, "embed_dim": 16}

# Small x-clip heads, and every term the objectives add to the main contrastive one (with the
# names they are logged under, as loss/<name>).
SMALL_HEADS = {"simsiam": {"hidden_dim": 16, "projection_dim": 8, "predictor_hidden_dim": 8},
               "simclr": {"hidden_dim": 16, "projection_dim": 8}}
# Every registered term beside the main contrastive one, switched on (small heads where it has any), in
# table order: a term added to OBJECTIVE_TERMS joins the DDP/FSDP2/resume equality tests that use these.
_ADDED = [term for term in OBJECTIVE_TERMS if term.section != "contrastive"]
ADDED_TERMS = {term.section: {"enabled": True, **SMALL_HEADS.get(term.section, {})} for term in _ADDED}
ADDED_TERM_NAMES = [term.names[0] for term in _ADDED]


def small_config(logs, name="run", *, steps=6, batch_size=8, evaluate=False, **loop_overrides):
    config = smoke_config(logs=str(logs), name=name, steps=steps, batch_size=batch_size, **SMALL_MODEL)
    config.data.train_num_samples = 256
    if not evaluate:
        config.eval = EvalConfig(eval_at_end=False)
    for key, value in loop_overrides.items():
        setattr(config.loop, key, value)
    return config


def assert_same_final_checkpoint(run_dir, reference_dir, *, steps):
    """Both runs' latest checkpoints are at `steps` and hold bitwise-equal weights, optimiser state
    and train state (step, epoch, data position, counters)."""
    checkpoints = []
    for directory in (run_dir, reference_dir):
        latest = CheckpointManager(directory / "checkpoints", keep=2).latest()
        assert latest.name == f"step_{steps:07d}"
        checkpoints.append((load_file(latest / "model.safetensors"),
                            torch.load(latest / "train_state.pt", weights_only=False)))
    (weights, state), (reference_weights, reference_state) = checkpoints
    assert weights.keys() == reference_weights.keys()
    for name in reference_weights:
        assert torch.equal(weights[name], reference_weights[name]), name
    optimizer, reference_optimizer = state["optimizer"]["state"], reference_state["optimizer"]["state"]
    assert optimizer.keys() == reference_optimizer.keys()
    for index in reference_optimizer:
        for key in reference_optimizer[index]:
            assert torch.equal(optimizer[index][key], reference_optimizer[index][key]), (index, key)
    assert state["train_state"] == reference_state["train_state"]


def csv_config(logs, manifest, *, name="run", batch_size=12, epochs=1, max_skip_fraction=0.05,
               skip_check_min_samples=200):
    """A run of whole epochs over every row of `manifest` (no max_steps, no subset)."""
    config = small_config(logs, name=name, steps=None, batch_size=batch_size)
    config.data.dataset_type = "csv"
    config.data.train_data = str(manifest)
    config.data.train_num_samples = None
    config.data.max_skip_fraction = max_skip_fraction
    config.data.skip_check_min_samples = skip_check_min_samples
    config.loop.epochs = epochs
    return config


def logged_losses(run_dir) -> dict[int, float]:
    """step -> loss of the train records in the run's metrics.jsonl."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if r["kind"] == "train"}


def sigkill_after_a_checkpoint(process, run_dir, timeout_s: float = 240) -> tuple[int, int]:
    """SIGKILL `process` (a `cliplab train` writing `run_dir`) as soon as it has logged a step after its
    newest checkpoint; -> (that checkpoint's step, the last logged step). Fails when the run ends first."""
    killed_at = checkpoint_at = None
    try:
        deadline = time.time() + timeout_s
        while time.time() < deadline and process.poll() is None:
            checkpoints = run_dir / "checkpoints"
            latest = CheckpointManager(checkpoints, keep=2).latest() if checkpoints.exists() else None
            logged = logged_losses(run_dir) if (run_dir / "metrics.jsonl").exists() else {}
            if latest is not None and logged and max(logged) > int(latest.name.split("_")[1]):
                process.send_signal(signal.SIGKILL)
                killed_at, checkpoint_at = max(logged), int(latest.name.split("_")[1])
                break
            time.sleep(0.005)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    return checkpoint_at, killed_at


def assert_sharded_build_keeps_the_full_builds_values(config) -> None:
    """What FSDP2's meta build of `config` records for each rank of 2 is that rank's rows of the full
    build with the same seed (every initialiser replays shard by shard: no data-dependent draws), every
    tensor of the state dict, and the generator ends where the full build leaves it."""
    from cliplab.distributed.shard_init import ShardedInit, shard_rows
    from cliplab.models import build_model
    from cliplab.models.registry import initialisers_on_meta

    torch.manual_seed(0)
    full = build_model(config).state_dict()
    after_full = torch.rand(4)
    for rank in range(2):
        recorder = ShardedInit(rank, 2)
        torch.manual_seed(0)
        with initialisers_on_meta(), recorder.building():
            sharded = build_model(config)
        assert all(parameter.is_meta for parameter in sharded.parameters())
        assert torch.equal(torch.rand(4), after_full)
        kept = recorder.values(sharded)
        assert set(kept.names()) == {name for name in full if not name.endswith("_extra_state")}
        for tensor_name in kept.names():
            tensor = full[tensor_name]
            rows = shard_rows(tensor.shape[0], rank, 2) if tensor.dim() >= 2 else None
            assert torch.equal(kept.rows(tensor_name, rows), tensor if rows is None else tensor[rows]), \
                (rank, tensor_name)


def ddp_then_fsdp(rank, world_size, logs, manifest, name, overrides) -> None:
    """On each of `world_size` gloo ranks: a DDP run, then an FSDP2 run ("ddp", "fsdp" under `logs`)
    of model `name` with `overrides`, 3 epochs of the CSV `manifest` at a global batch of 8; every
    rank logs the loss of the whole global batch (gather_with_grad)."""
    from cliplab.train import train
    from cliplab.train.config import ModelSetupConfig

    for run, fsdp in (("ddp", False), ("fsdp", True)):
        config = csv_config(logs, manifest, name=run, batch_size=8 // world_size, epochs=3)
        config.model = ModelSetupConfig(name=name, overrides=dict(overrides))
        config.loss.gather_with_grad = True
        config.distributed.fsdp = fsdp
        train(config)


def assert_fsdp_follows_ddp(logs, manifest, name, overrides) -> None:
    """2 gloo ranks, 6 steps (`ddp_then_fsdp`): FSDP2 within 1e-4 of DDP, the first step equal."""
    import math

    from cliplab.distributed.launch import run_on_workers

    run_on_workers(ddp_then_fsdp, 2, logs, manifest, name, overrides, timeout_s=600)
    ddp, fsdp = (list(logged_losses(logs / run).values()) for run in ("ddp", "fsdp"))
    assert len(ddp) == len(fsdp) == 6 and ddp[0] == fsdp[0]
    assert all(math.isclose(ours, theirs, rel_tol=1e-4) for ours, theirs in zip(fsdp, ddp)), (fsdp, ddp)

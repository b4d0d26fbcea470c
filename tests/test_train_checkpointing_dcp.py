"""FSDP2 runs checkpoint as DCP directories and resume on another world size; the checkpoint exports.

A run of N = 2 (real gloo processes, the small config, global batch 8) writes DCP checkpoints at
step K and at its end; resumed from step K with N = 1 (and, `slow`, N = 4) and the same global
batch, the next 30 steps' losses are within 1e-4 relative of the uninterrupted run: the shards
are resharded, the global batches are world-size independent, and what differs is the order of
floating-point reductions (the issue measured about 5e-5 relative by step 40 between DDP runs at
N = 1 and 2 from that alone). The final checkpoint, exported to a bundle in this process (no
process group), gives the outputs the trained, sharded model gave.
"""

import json
import math
import shutil

import pytest
import torch

import cliplab
from cliplab.checkpoint_files.manifest import verify_checkpoint
from cliplab.cli import main
from cliplab.distributed.launch import run_on_workers
from cliplab.errors import UserError
from cliplab.file_names import DCP_SHARDS_DIR
from cliplab.train import TrainHooks, train
from cliplab.train.checkpointing.manager import CheckpointManager

from hostile_files import replace_with_pickle, republish, store_instead
from train_helpers import small_config

K, FURTHER = 10, 30
PRETRAINED_STEPS = 4
GLOBAL_BATCH = 8
LOSS_RTOL = 1e-4


def _config(logs, name, world_size, *, steps):
    config = small_config(logs, name=name, steps=steps, batch_size=GLOBAL_BATCH // world_size)
    config.data.train_num_samples = GLOBAL_BATCH * (K + FURTHER)
    # The global loss on every rank (local_loss off), so the logged loss is the same quantity at any N.
    config.loss.local_loss, config.loss.gather_with_grad = False, True
    config.distributed.fsdp = True
    config.checkpoint.save_every_steps = K
    config.checkpoint.keep_checkpoints = (K + FURTHER) // K  # every one of them
    return config


def _probe():
    generator = torch.Generator().manual_seed(11)
    return torch.randn(3, 3, 28, 28, generator=generator), torch.randint(1, 200, (3, 20), generator=generator)


def _uninterrupted(rank, world_size, logs):
    """The N = 2 run; returns what its sharded model gives for the probe after the last step."""
    outputs = {}

    def after_step(step, model):
        if step == K + FURTHER:
            with torch.no_grad():
                result = model(*_probe())  # a collective under FSDP2: every rank runs it
            outputs.update({key: result[key].clone() for key in ("image_features", "text_features", "logit_scale")})

    train(_config(logs, "full", world_size, steps=K + FURTHER), hooks=TrainHooks(after_step=after_step))
    for name, fsdp in (("pretrained_ddp", False), ("pretrained_fsdp", True)):  # the DCP step directory as --pretrained
        config = _config(logs, name, world_size, steps=PRETRAINED_STEPS)
        config.model.pretrained, config.model.name, config.model.overrides = str(_step_dir(logs, K)), None, {}
        config.distributed.fsdp = fsdp
        train(config)
    return outputs


def _step_dir(logs, step):
    return logs / "full" / "checkpoints" / f"step_{step:07d}"


def _resumed(rank, world_size, logs):
    config = _config(logs, f"resumed_on_{world_size}", world_size, steps=K + FURTHER)
    config.checkpoint.resume = str(_step_dir(logs, K))
    train(config)


def _losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {record["step"]: record["loss"] for record in records if record["kind"] == "train"}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    logs = tmp_path_factory.mktemp("fsdp_resume")
    outputs = run_on_workers(_uninterrupted, 2, logs, timeout_s=600)[0]
    return logs, outputs


def test_the_run_writes_verified_dcp_checkpoints(full_run):
    logs, _ = full_run
    checkpoints = logs / "full" / "checkpoints"
    for step in (K, K + FURTHER):
        files = verify_checkpoint(checkpoints / f"step_{step:07d}").files
        assert {f"{DCP_SHARDS_DIR}/.metadata", f"{DCP_SHARDS_DIR}/__0_0.distcp", f"{DCP_SHARDS_DIR}/__1_0.distcp",
                "train_state.pt", "config.json"} <= files.keys()
        assert "model.safetensors" not in files
    assert CheckpointManager(checkpoints, keep=2).latest().name == f"step_{K + FURTHER:07d}"


@pytest.mark.parametrize("world_size", [1, pytest.param(4, marks=pytest.mark.slow)])
def test_a_run_of_two_ranks_resumes_on_another_world_size(full_run, world_size):
    logs, _ = full_run
    run_on_workers(_resumed, world_size, logs, timeout_s=600)
    reference, resumed = _losses(logs / "full"), _losses(logs / f"resumed_on_{world_size}")
    assert sorted(resumed) == list(range(K + 1, K + FURTHER + 1))
    for step, loss in resumed.items():
        assert math.isclose(loss, reference[step], rel_tol=LOSS_RTOL), (step, loss, reference[step])


def test_the_exported_bundle_gives_the_trained_models_outputs(full_run, tmp_path):
    logs, trained = full_run
    step_dir = logs / "full" / "checkpoints" / f"step_{K + FURTHER:07d}"
    assert main(["export", str(step_dir), "--format", "bundle", "--out", str(tmp_path / "bundle")]) == 0
    model, _, _ = cliplab.load(tmp_path / "bundle")
    assert model.logit_scale.dim() == 0
    with torch.no_grad():
        image_features, text_features, logit_scale = model(*_probe())
    torch.testing.assert_close(image_features, trained["image_features"], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(text_features, trained["text_features"], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(logit_scale, trained["logit_scale"], rtol=0, atol=0)


def test_a_checkpoint_as_pretrained_weights_starts_an_fsdp2_run_as_it_starts_ddp(full_run):
    """--pretrained STEP_DIR: the FSDP2 run fills its shards from the checkpoint, one tensor at a
    time, and trains as DDP from the same weights does (equal first step, then within 1e-4)."""
    logs, _ = full_run
    ddp, fsdp = _losses(logs / "pretrained_ddp"), _losses(logs / "pretrained_fsdp")
    assert sorted(ddp) == sorted(fsdp) == list(range(1, PRETRAINED_STEPS + 1))
    assert ddp[1] == fsdp[1]
    for step, loss in fsdp.items():
        assert math.isclose(loss, ddp[step], rel_tol=LOSS_RTOL), (step, loss, ddp[step])


@pytest.mark.parametrize("damage", ["lost shard", "lost metadata", "unfinished save"])
def test_resume_takes_the_previous_checkpoint_when_the_newest_is_incomplete(full_run, tmp_path, damage):
    logs, _ = full_run
    copy = CheckpointManager(shutil.copytree(logs / "full" / "checkpoints", tmp_path / "checkpoints"), keep=2)
    *_, previous, newest = copy.step_dirs()
    notes = []
    if damage == "unfinished save":  # killed after the shards, before the manifest: a staging directory
        staging = copy.directory / f".tmp-step_{K + FURTHER + 1:07d}"
        shutil.copytree(newest, staging)
        (staging / "manifest.json").unlink()
        assert copy.find_resumable(notes.append) == newest and notes == []
        return
    lost = f"{DCP_SHARDS_DIR}/__1_0.distcp" if damage == "lost shard" else f"{DCP_SHARDS_DIR}/.metadata"
    (newest / lost).unlink()
    assert copy.find_resumable(notes.append) == previous
    assert notes == [f"skipping checkpoint {newest}: it lacks {lost}, which its manifest lists"]


# (file, entry of the shards re-stored as a pickle): the files of a sharded checkpoint holding pickles
HOSTILE = [("train_state.pt", None), (f"{DCP_SHARDS_DIR}/.metadata", None),
           (DCP_SHARDS_DIR, "model.logit_scale"),  # a tensor
           (DCP_SHARDS_DIR, "optimizer.param_groups.0.lr")]  # a value, which every rank unpickles


def _resume_each(rank, world_size, logs, runs):
    """Every rank resumes from each hostile step directory in turn; -> the message each raised."""
    messages = []
    for name, step_dir in runs:
        config = _config(logs, name, world_size, steps=K + FURTHER)
        config.checkpoint.resume = str(step_dir)
        try:
            train(config)
        except UserError as error:
            messages.append(str(error))
    return messages


def test_an_fsdp2_resume_from_code_running_pickles_runs_nothing_on_any_rank(full_run, tmp_path):
    """Each file of a sharded checkpoint that holds pickles (train_state.pt, the DCP index, a tensor
    and an optimiser value stored in the shards), replaced by one that would create a marker, the
    manifest recomputed: both ranks refuse it in the same line naming the file, and nothing runs.
    Before: train_state.pt and .metadata ran on every rank, the shards' value on the ranks reading it."""
    logs, _ = full_run
    marker = tmp_path / "ran"
    runs, expected = [], []
    for index, (name, entry) in enumerate(HOSTILE):
        step_dir = shutil.copytree(_step_dir(logs, K), tmp_path / f"hostile_{index}" / _step_dir(logs, K).name)
        if entry is None:
            replace_with_pickle(step_dir / name, marker)
            expected.append(str(step_dir / name))
        else:
            expected.append(str(store_instead(step_dir / DCP_SHARDS_DIR, entry, marker)))
        republish(step_dir)
        runs.append((f"resumed_hostile_{index}", step_dir))
    per_rank = run_on_workers(_resume_each, 2, logs, runs, timeout_s=600)
    assert not marker.exists()
    assert per_rank[0] == per_rank[1] and len(per_rank[0]) == len(HOSTILE)
    for message, path in zip(per_rank[0], expected):
        assert message.startswith(f"{path}: ") and "\n" not in message, message

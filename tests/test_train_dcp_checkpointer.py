"""DCP checkpoints of a sharded tiny CLIP: written by 2 gloo ranks into one verified step directory,
restored bitwise (weights, AdamW state, each rank's RNG), loaded for use offline, and a lost shard,
a lost `.metadata` or an unfinished save (a staging directory without manifest) leave resume on
the previous checkpoint.
"""

import shutil

import pytest
import torch
from torch.distributed.fsdp import fully_shard
from torch.nn.utils import parametrize

import cliplab
from cliplab.data.tokenizer import Tokenizer
from cliplab.distributed.launch import run_on_workers
from cliplab.models import create_model
from cliplab.train.checkpoint import CheckpointManager
from cliplab.train.checkpointer import CheckpointedParts
from cliplab.train.config import CheckpointConfig, OptimConfig
from cliplab.train.dcp_checkpointer import DcpCheckpointer
from cliplab.train.manifest import read_manifest, verify_checkpoint
from cliplab.train.optim import build_optimizer
from cliplab.train.state import TrainState
from test_train_dcp_state import _AsScalar, _rename, _whole_state

RUN_ID = "0123456789abcdef" * 2
CAPTIONS = ["a photo of a cat", "a photo of a dog", "two birds", "a red car"]


def _sharded_clip(seed):
    torch.manual_seed(seed)
    model = create_model("tiny", output_dict=True, **{"vision.width": 16, "text.width": 16, "text.heads": 2,
                                                      "text.layers": 1, "text.vocab_size": 300})
    parametrize.register_parametrization(model, "logit_scale", _AsScalar())
    fully_shard(model.parametrizations.logit_scale)
    fully_shard(model)
    return model, build_optimizer(model, OptimConfig(lr=0.01))


def _checkpointer(directory, model, optimizer, tokenizer):
    parts = CheckpointedParts(model=model, tokenizer=tokenizer, optimizer=optimizer, scaler=None, objectives=None)
    return DcpCheckpointer(CheckpointConfig(), CheckpointManager(directory, keep=3, run_id=RUN_ID), parts,
                           saved_config={"loop": {"seed": 0}}, trainable=model, rename=_rename)


def _train_save_restore(rank, world_size, directory):
    tokenizer = Tokenizer.train(CAPTIONS, vocab_size=300, context_length=16)
    model, optimizer = _sharded_clip(seed=0)
    checkpointer = _checkpointer(directory, model, optimizer, tokenizer)
    images, tokens = torch.randn(4, 3, 28, 28, generator=torch.Generator().manual_seed(rank)), tokenizer(CAPTIONS)
    for step in (1, 2):
        optimizer.zero_grad()
        output = model(images, tokens)
        (output["image_features"] @ output["text_features"].T * output["logit_scale"]).sum().backward()
        optimizer.step()
        torch.manual_seed(100 * step + rank)
        checkpointer.save(TrainState(step=step, epoch=0, batch_in_epoch=step))
    saved = _whole_state(model, optimizer)
    draws = torch.rand(3)

    fresh, fresh_optimizer = _sharded_clip(seed=1)
    torch.manual_seed(999)
    state = _checkpointer(directory, fresh, fresh_optimizer, tokenizer).restore(directory / "step_0000002", rank=rank)
    return saved, _whole_state(fresh, fresh_optimizer), draws, torch.rand(3), state.step


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    directory = tmp_path_factory.mktemp("dcp_run") / "checkpoints"
    return directory, run_on_workers(_train_save_restore, 2, directory, timeout_s=300)


def test_every_rank_writes_its_shards_into_one_verified_step_directory(two_checkpoints):
    directory, _ = two_checkpoints
    for step in (1, 2):
        manifest = verify_checkpoint(directory / f"step_{step:07d}")
        assert manifest.step == step and manifest.run_id == RUN_ID
        assert {"shards/.metadata", "shards/__0_0.distcp", "shards/__1_0.distcp", "train_state.pt",
                "config.json"} <= manifest.files.keys()
        assert not any(name.endswith("model.safetensors") for name in manifest.files)
    assert (directory / "latest").read_text() == "step_0000002\n"
    assert not list(directory.glob(".tmp-*"))


def test_restore_on_the_same_ranks_is_bitwise_with_each_ranks_rng(two_checkpoints):
    from test_train_dcp_state import _assert_equal_state

    _, results = two_checkpoints
    for saved, restored, draws, draws_after_restore, step in results:
        _assert_equal_state(restored, saved)
        assert torch.equal(draws_after_restore, draws) and step == 2
    assert not torch.equal(results[0][2], results[1][2])  # each rank got its own generator back


def test_cliplab_load_of_a_dcp_step_directory_gives_the_trained_weights(two_checkpoints):
    directory, results = two_checkpoints
    model, _, _ = cliplab.load(directory.parent)  # the run directory: checkpoints/latest
    expected = {name[len("model."):] if name.startswith("model.") else name: value
                for name, value in results[0][0][0].items()}
    loaded = model.state_dict()
    assert loaded.keys() == expected.keys()
    assert loaded["logit_scale"].shape == ()
    for name, value in loaded.items():
        assert torch.equal(value, expected[name].reshape(value.shape)), name


@pytest.mark.parametrize("damage", ["lost shard", "lost metadata", "unfinished save"])
def test_resume_takes_the_previous_checkpoint_when_the_newest_is_incomplete(two_checkpoints, tmp_path, damage):
    copy = CheckpointManager(shutil.copytree(two_checkpoints[0], tmp_path / "checkpoints"), keep=3, run_id=RUN_ID)
    newest = copy.directory / "step_0000002"
    notes = []
    if damage == "unfinished save":  # killed after the shards, before the manifest: only a staging directory
        staging = copy.directory / ".tmp-step_0000003"
        shutil.copytree(newest, staging)
        (staging / "manifest.json").unlink()
        assert copy.find_resumable(notes.append) == newest and notes == []
        return
    lost = "shards/__1_0.distcp" if damage == "lost shard" else "shards/.metadata"
    (newest / lost).unlink()
    assert copy.find_resumable(notes.append) == copy.directory / "step_0000001"
    assert notes == [f"skipping checkpoint {newest}: it lacks {lost}, which its manifest lists"]
    assert read_manifest(copy.directory / "step_0000001").step == 1

"""Tower family "timm_convnext" against open_clip 3.3.0 + timm 1.0.31: small variants of
`convnext_base` (linear head) and `convnext_large_d` (MLP head) with random weights give equal
features through the family's key rules both ways (fp32, eval, 1e-5 relative), and from an open_clip
hub directory with open_clip's eval preprocessing; the lock groups are timm's and the lock is
open_clip's; the converter reads timm's facts, exports by name and refuses what it does not build;
channels-last and gradient checkpointing change nothing; a tiny override trains on a CSV, and a
small ConvNeXt checkpoint fine-tunes, resumes exactly (in process; killed by SIGKILL through the CLI:
slow) and locks as open_clip does; a real-size hub directory loads and exports back to open_clip
(slow)."""

import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from cliplab.data.tokenizer_openai import openai_bpe_tokenizer
from cliplab.errors import UnsupportedArchitectureError
from cliplab.model_io import save
from cliplab.models import build_model, create_model
from cliplab.models.families.timm_convnext import TimmConvNextConfig
from cliplab.models.open_clip_config import builtin_open_clip_config, config_from_open_clip, config_to_open_clip
from cliplab.train import train
from cliplab.train.checkpointing.manager import CheckpointManager
from finetune_fixtures import assert_fine_tune_resumes_exactly, finetune_config
from reference_libraries import assert_relative_close
from timm_fixtures import (SmallTimmTower, assert_checkpointing_changes_nothing_and_every_parameter_learns,
                           assert_groups_are_timms, assert_hub_directory_loads_as_open_clips, assert_lock_is_open_clips,
                           assert_real_size_round_trip, assert_refused_by_name, assert_same_features,
                           assert_trains_on_a_csv, noise_manifest, side_by_side)
from train_helpers import assert_fsdp_follows_ddp, assert_same_final_checkpoint, logged_losses, sigkill_after_a_checkpoint

torch.set_num_threads(2)
SMALL_SIZES = {"depths": [1, 1, 2, 1], "dims": [16, 32, 64, 128]}
BASE = SmallTimmTower("convnext_base", {key: tuple(value) for key, value in SMALL_SIZES.items()}, SMALL_SIZES, 64)
LARGE_D = SmallTimmTower("convnext_large_d", BASE.timm_kwargs, SMALL_SIZES, 64)
# convnext_base shrunk to train in a second (its drop path 0.1 stays: resuming must replay it).
TINY = {"embed_dim": 16, "vision.depths": [1, 1, 2, 1], "vision.dims": [8, 16, 16, 32], "vision.image_size": 32,
        "preprocess.image_size": 32, "text.width": 32, "text.heads": 2, "text.layers": 1}
# open_clip's pretrained convnext configs (laion/CLIP-convnext_*): OpenAI's statistics, bicubic, shortest side.
HUB_PREPROCESS = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
                  "interpolation": "bicubic", "resize_mode": "shortest"}


def test_the_converter_reads_timms_facts():
    base = config_from_open_clip(builtin_open_clip_config("convnext_base"))
    assert base.vision == TimmConvNextConfig(timm_model_name="convnext_base", image_size=224, depths=[3, 3, 27, 3],
                                             dims=[128, 256, 512, 1024], drop_path=0.1, projection="linear")
    large_d = config_from_open_clip(builtin_open_clip_config("convnext_large_d_320")).vision
    assert (large_d.image_size, large_d.mlp_head_width, large_d.mlp_head_output, large_d.projection) == (
        320, 1536, 768, "none")
    assert config_from_open_clip(builtin_open_clip_config("convnext_xxlarge")).vision.norm_eps == 1e-5


@pytest.mark.parametrize("small", [BASE, LARGE_D], ids=["linear_head", "mlp_head"])
def test_small_variants_equal_open_clip_through_the_key_rules_both_ways(small):
    reference, ours, images = side_by_side(small)
    assert_same_features(ours, reference, images)
    with torch.no_grad():  # the cell tokens are timm's final feature map, through its head norm
        trunk = reference.visual.trunk
        expected = trunk.head.norm(trunk.forward_features(images)).flatten(2).transpose(1, 2)
        if small is BASE:
            assert_relative_close(ours.vision_tower.forward_tokens(images), expected)
        else:
            assert_relative_close(ours.vision_tower.forward_tokens(images), reference.visual.head(expected))


def test_a_hub_directory_loads_with_open_clips_features_and_eval_preprocessing(tmp_path):
    assert_hub_directory_loads_as_open_clips(BASE, tmp_path / "hub", HUB_PREPROCESS)


def test_the_groups_are_timms_and_the_lock_is_open_clips():
    """Groups as timm's group matcher counts them (stem; each block, a downsampling layer with its
    stage's first block; the head norm: 7 for these depths); the MLP head is never locked."""
    assert len(build_model(LARGE_D.config()).vision_tower.parameter_groups()) == 7
    assert_groups_are_timms(BASE)
    assert_lock_is_open_clips(LARGE_D, [0, 1, 4, 7])


def test_export_names_the_timm_model_and_refuses_other_sizes():
    for name in ("convnext_base_w_320", "convnext_large_d"):
        config = config_from_open_clip(builtin_open_clip_config(name))
        exported = config_to_open_clip(config)
        assert config_from_open_clip(exported) == config
    assert exported["vision_cfg"] == {"timm_model_name": "convnext_large", "timm_model_pretrained": False,
                                      "image_size": 256, "timm_pool": "avg", "timm_proj": "mlp",
                                      "timm_proj_bias": False, "timm_drop": 0.0, "timm_drop_path": 0.1}
    with pytest.raises(UnsupportedArchitectureError, match=r"open_clip cannot represent this model: timm's "
                                                           r"convnext_base is not this tower: vision.depths="):
        config_to_open_clip(BASE.config())


@pytest.mark.parametrize("change, message", [
    ({"timm_pool": "abs_attn"}, r"vision_cfg.timm_model_name='convnext_base' needs timm_pool='abs_attn', which the "
                                r"timm tower family 'timm_convnext' does not build"),
    ({"timm_proj": None}, r"needs timm_proj=None"),
    ({"timm_proj": "none", "timm_pool": ""}, r"needs timm_pool=''"),
    ({"patch_dropout": 0.5}, r"needs patch_dropout=0.5"),
])
def test_options_the_family_does_not_build_are_refused_by_name(change, message):
    assert_refused_by_name("convnext_base", change, message)


def test_no_batch_norm_so_nothing_to_freeze_but_parameters():
    model = create_model("convnext_base", device="meta")
    assert not any(isinstance(module, torch.nn.modules.batchnorm._BatchNorm) for module in model.modules())


def test_channels_last_keeps_its_layout_and_the_features():
    reference, ours, images = side_by_side(BASE)
    layouts = []
    for stage in ours.vision_tower.stages:
        stage.register_forward_hook(lambda module, inputs, output: layouts.append(
            output.is_contiguous(memory_format=torch.channels_last)))
    with torch.no_grad():
        expected = ours.encode_image(images)
        ours.to(memory_format=torch.channels_last)
        assert_relative_close(ours.encode_image(images.contiguous(memory_format=torch.channels_last)), expected)
    assert layouts[len(layouts) // 2:] == [True] * 4


def test_gradient_checkpointing_and_drop_path_train_every_parameter():
    assert_checkpointing_changes_nothing_and_every_parameter_learns(BASE)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return noise_manifest(tmp_path_factory.mktemp("data"), 8)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny convnext_base saved as a cliplab bundle (open_clip names its timm towers only at
    their real sizes, so a small pretrained ConvNeXt is a cliplab bundle)."""
    torch.manual_seed(0)
    return save(create_model("convnext_base", **TINY), openai_bpe_tokenizer(77), tmp_path_factory.mktemp("tiny"))


def test_a_tiny_override_trains_on_a_csv(manifest, tmp_path):
    assert_trains_on_a_csv("convnext_base", TINY, manifest, tmp_path)


def test_fsdp_units_are_the_blocks():
    model = create_model("convnext_base", device="meta", **TINY)
    blocks = [block for stage in model.vision_tower.stages for block in stage.blocks]
    assert len(blocks) == 5 and model.fsdp_units() == [*blocks, *model.text_tower.transformer.blocks]


@pytest.mark.slow
def test_fsdp_shards_the_blocks_and_follows_ddp(tmp_path):
    assert_fsdp_follows_ddp(tmp_path / "logs", noise_manifest(tmp_path / "data", 16), "convnext_base", TINY)


def test_fine_tuning_resumes_exactly(checkpoint, manifest, tmp_path):
    assert_fine_tune_resumes_exactly(tmp_path, manifest, checkpoint)


@pytest.mark.parametrize("unlocked_groups, trained", [(0, set()), (1, {"head_norm"})])
def test_lock_image_freezes_the_trunk_and_trains_the_projection(unlocked_groups, trained, checkpoint, manifest,
                                                                tmp_path):
    """--lock-image --lock-image-freeze-bn-stats (norms locked too, open_clip's lock): the trunk
    keeps the checkpoint's weights but for its last `unlocked_groups` groups; the projection
    (open_clip's visual.head) and the text tower train."""
    config = finetune_config(tmp_path, manifest, checkpoint, steps=2, lock_image=True, lock_image_freeze_bn_stats=True,
                             lock_image_unlocked_groups=unlocked_groups)
    result = train(config)
    before = load_file(checkpoint / "model.safetensors")
    after = load_file(CheckpointManager(result.run_dir / "checkpoints", keep=2).latest() / "model.safetensors")
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    tower = {name.split(".")[1] for name in changed if name.startswith("vision_tower.")}
    assert tower == trained
    assert "image_projection.weight" in changed and any(name.startswith("text_tower.") for name in changed)


def _cli_command(logs, checkpoint, manifest, resume=False):
    command = [sys.executable, "-m", "cliplab", "train", "--pretrained", str(checkpoint), "--dataset-type", "csv",
               "--train-data", str(manifest), "--logs", str(logs), "--name", "run", "--max-steps", "12",
               "--batch-size", "4", "--epochs", "10", "--workers", "0", "--save-every-steps", "3",
               "--keep-checkpoints", "2", "--log-every-n-steps", "1", "--no-progress-bar", "--no-tensorboard",
               "--threads", "1", "--deterministic", "--warmup", "2", "--set", "eval.eval_at_end=false"]
    return command + (["--resume", "latest"] if resume else [])


@pytest.mark.slow
def test_a_fine_tune_killed_after_a_checkpoint_resumes_to_the_uninterrupted_run(checkpoint, manifest, tmp_path):
    """`cliplab train --pretrained <convnext bundle>` SIGKILLed once a step after a checkpoint is
    logged, resumed with --resume latest: the end is the uninterrupted run's, bit for bit (weights,
    optimiser, counters, the losses of every step after the checkpoint)."""
    subprocess.run(_cli_command(tmp_path / "reference", checkpoint, manifest), check=True, capture_output=True,
                   timeout=600)
    run_dir = tmp_path / "killed" / "run"
    process = subprocess.Popen(_cli_command(tmp_path / "killed", checkpoint, manifest), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    checkpoint_at, killed_at = sigkill_after_a_checkpoint(process, run_dir, timeout_s=600)
    assert checkpoint_at < killed_at < 12
    subprocess.run(_cli_command(tmp_path / "killed", checkpoint, manifest, resume=True), check=True,
                   capture_output=True, timeout=600)
    assert_same_final_checkpoint(run_dir, tmp_path / "reference" / "run", steps=12)
    losses, reference = logged_losses(run_dir), logged_losses(tmp_path / "reference" / "run")
    assert sorted(losses) == list(range(1, 13))
    assert all(losses[step] == reference[step] for step in range(checkpoint_at + 1, 13))


@pytest.mark.slow
def test_a_real_size_hub_directory_loads_and_exports_back_to_open_clip(tmp_path):
    """convnext_base at real size (151.5M parameters)."""
    assert_real_size_round_trip("convnext_base", HUB_PREPROCESS, tmp_path)

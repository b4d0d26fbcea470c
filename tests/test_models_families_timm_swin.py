"""Tower family "timm_swin" against open_clip 3.3.0 + timm 1.0.31: small variants of
`swin_base_patch4_window7_224` with random weights (at 224 with 7x7 windows, shifted in every stage
but the last; at 40 with 4x4 windows, where grids are padded) give equal features through the
family's key rules both ways (fp32, eval, 1e-5 relative), and from an open_clip hub directory with
open_clip's eval preprocessing; the lock groups are timm's and the lock is open_clip's; the
converter reads timm's facts, exports by name and refuses what it does not build; channels-last
input and gradient checkpointing change nothing; a real-size hub directory loads and exports back
to open_clip (slow)."""

import pytest
import torch

from cliplab.errors import UnsupportedArchitectureError
from cliplab.models import build_model, create_model
from cliplab.models.families.timm_swin import TimmSwinConfig
from cliplab.models.open_clip_config import builtin_open_clip_config, config_from_open_clip, config_to_open_clip
from reference_libraries import assert_relative_close
from timm_fixtures import (SmallTimmTower, assert_checkpointing_changes_nothing_and_every_parameter_learns,
                           assert_groups_are_timms, assert_hub_directory_loads_as_open_clips, assert_lock_is_open_clips,
                           assert_real_size_round_trip, assert_refused_by_name, assert_same_features,
                           assert_trains_on_a_csv, noise_manifest, side_by_side)
from train_helpers import assert_fsdp_follows_ddp

torch.set_num_threads(2)
NAME = "swin_base_patch4_window7_224"
SWIN = SmallTimmTower(NAME, {"embed_dim": 16, "depths": (2, 2, 2, 2), "num_heads": (1, 2, 2, 4)},
                      {"width": 16, "depths": [2, 2, 2, 2], "heads": [1, 2, 2, 4]}, 224)
# Grids 10, 5, 3, 2 with 4x4 windows: padded windows in the first two stages, a whole-grid window
# without shift in the third, an odd grid merged in the fourth.
PADDED = SmallTimmTower(NAME, {**SWIN.timm_kwargs, "depths": (2, 2, 2, 1), "img_size": 40, "window_size": 4},
                        {**SWIN.vision, "depths": [2, 2, 2, 1], "window": 4}, 40)
# Grids 8 and 4 with 4x4 windows (stage 0 shifted), drop path 0.1 (timm's default) on: trains in a second.
TINY = {"embed_dim": 16, "vision.width": 8, "vision.depths": [2, 1], "vision.heads": [1, 2], "vision.window": 4,
        "vision.image_size": 32, "preprocess.image_size": 32, "text.width": 32, "text.heads": 2, "text.layers": 1}
HUB_PREPROCESS = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "interpolation": "bilinear"}


def test_the_converter_reads_timms_facts():
    config = config_from_open_clip(builtin_open_clip_config(NAME))
    assert config.vision == TimmSwinConfig(timm_model_name=NAME, image_size=224, patch_size=4, width=128,
                                           depths=[2, 2, 18, 2], heads=[4, 8, 16, 32], window=7,
                                           drop_path=0.1, projection="linear")  # timm's default drop path
    assert config.vision.output_width == 1024 and config.embed_dim == 640


@pytest.mark.parametrize("small", [SWIN, PADDED], ids=["224", "padded"])
def test_small_variants_equal_open_clip_through_the_key_rules_both_ways(small):
    reference, ours, images = side_by_side(small)
    assert_same_features(ours, reference, images)
    with torch.no_grad():  # the tokens are timm's normalised last stage
        expected = reference.visual.trunk.forward_features(images).flatten(1, 2)
        assert_relative_close(ours.vision_tower.forward_tokens(images), expected)


def test_a_hub_directory_loads_with_open_clips_features_and_eval_preprocessing(tmp_path):
    assert_hub_directory_loads_as_open_clips(SWIN, tmp_path / "hub", HUB_PREPROCESS)


def test_the_groups_are_timms_and_the_lock_is_open_clips():
    """Groups as timm's group matcher counts them (patch embedding; each block, a patch merging
    with its stage's first block; the final norm with the last block: 9 for these depths)."""
    assert len(build_model(SWIN.config()).vision_tower.parameter_groups()) == 9
    assert_groups_are_timms(SWIN)
    assert_lock_is_open_clips(SWIN, [0, 1, 2, 9])


def test_export_names_the_timm_model_and_refuses_other_sizes():
    config = config_from_open_clip(builtin_open_clip_config(NAME))
    exported = config_to_open_clip(config)
    assert exported["vision_cfg"] == {"timm_model_name": NAME, "timm_model_pretrained": False, "image_size": 224,
                                      "timm_pool": "avg", "timm_proj": "linear", "timm_proj_bias": False,
                                      "timm_drop": 0.0, "timm_drop_path": 0.1}
    assert config_from_open_clip(exported) == config
    with pytest.raises(UnsupportedArchitectureError, match=r"open_clip cannot represent this model: timm's "
                                                           r"swin_base_patch4_window7_224 is not this tower: "
                                                           r"vision.width=16 \(timm: 128\)"):
        config_to_open_clip(SWIN.config())


@pytest.mark.parametrize("change, message", [
    ({"image_size": 256}, r"vision_cfg.image_size=256 differs from timm's img_size 224"),
    ({"timm_pool": "rot_attn"}, r"vision_cfg.timm_model_name='swin_base_patch4_window7_224' needs "
                                r"timm_pool='rot_attn', which the timm tower family 'timm_swin' does not build"),
])
def test_options_the_family_does_not_build_are_refused_by_name(change, message):
    assert_refused_by_name(NAME, change, message)


def test_no_batch_norm_so_nothing_to_freeze_but_parameters():
    model = create_model(NAME, device="meta")
    assert not any(isinstance(module, torch.nn.modules.batchnorm._BatchNorm) for module in model.modules())


def test_channels_last_input_gives_the_same_features():
    """The patch embedding's output is permuted to [B, H, W, C] at once: free for channels-last."""
    ours = build_model(PADDED.config()).eval()
    images = PADDED.images()
    with torch.no_grad():
        expected = ours.encode_image(images)
        ours.to(memory_format=torch.channels_last)
        assert_relative_close(ours.encode_image(images.contiguous(memory_format=torch.channels_last)), expected)


def test_gradient_checkpointing_and_drop_path_train_every_parameter():
    assert_checkpointing_changes_nothing_and_every_parameter_learns(PADDED)


def test_a_tiny_override_trains_on_a_csv(tmp_path):
    assert_trains_on_a_csv(NAME, TINY, noise_manifest(tmp_path / "data", 8), tmp_path)


def test_fsdp_units_are_the_blocks():
    model = create_model(NAME, device="meta", **TINY)
    blocks = [block for stage in model.vision_tower.stages for block in stage.blocks]
    assert len(blocks) == 3 and model.fsdp_units() == [*blocks, *model.text_tower.transformer.blocks]


@pytest.mark.slow
def test_fsdp_shards_the_blocks_and_follows_ddp(tmp_path):
    assert_fsdp_follows_ddp(tmp_path / "logs", noise_manifest(tmp_path / "data", 16), NAME, TINY)


@pytest.mark.slow
def test_a_real_size_hub_directory_loads_and_exports_back_to_open_clip(tmp_path):
    """swin_base_patch4_window7_224 at real size (178.6M parameters)."""
    assert_real_size_round_trip(NAME, HUB_PREPROCESS, tmp_path)

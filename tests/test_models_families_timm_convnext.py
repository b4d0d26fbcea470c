"""Tower family "timm_convnext" against open_clip 3.3.0 + timm 1.0.31: small variants of
`convnext_base` (linear head) and `convnext_large_d` (MLP head) with random weights give equal
features through the family's key rules both ways (fp32, eval, 1e-5 relative), and from an open_clip
hub directory with open_clip's eval preprocessing; the lock groups are timm's and the lock is
open_clip's; the converter reads timm's facts, exports by name and refuses what it does not build;
channels-last and gradient checkpointing change nothing; a real-size hub directory loads and
exports back to open_clip (slow)."""

import pytest
import torch

from cliplab.errors import UnsupportedArchitectureError
from cliplab.models import build_model, create_model
from cliplab.models.families.timm_convnext import TimmConvNextConfig
from cliplab.models.open_clip_config import builtin_open_clip_config, config_from_open_clip, config_to_open_clip
from reference_libraries import assert_relative_close
from timm_fixtures import (SmallTimmTower, assert_checkpointing_changes_nothing_and_every_parameter_learns,
                           assert_eval_preprocessing_is_open_clips, assert_groups_are_timms, assert_lock_is_open_clips,
                           assert_real_size_round_trip, assert_same_features, loaded_from)

torch.set_num_threads(2)
SMALL_SIZES = {"depths": [1, 1, 2, 1], "dims": [16, 32, 64, 128]}
BASE = SmallTimmTower("convnext_base", {key: tuple(value) for key, value in SMALL_SIZES.items()}, SMALL_SIZES, 64)
LARGE_D = SmallTimmTower("convnext_large_d", BASE.timm_kwargs, SMALL_SIZES, 64)
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
    reference = small.reference()
    ours = loaded_from(reference, small.config())
    images = small.images()
    assert_same_features(ours, reference, images)
    with torch.no_grad():  # the cell tokens are timm's final feature map, through its head norm
        trunk = reference.visual.trunk
        expected = trunk.head.norm(trunk.forward_features(images)).flatten(2).transpose(1, 2)
        if small is BASE:
            assert_relative_close(ours.vision_tower.forward_tokens(images), expected)
        else:
            assert_relative_close(ours.vision_tower.forward_tokens(images), reference.visual.head(expected))


def test_a_hub_directory_loads_with_open_clips_features_and_eval_preprocessing(tmp_path):
    BASE.write_hub(tmp_path / "hub", HUB_PREPROCESS)
    theirs, ours = BASE.open_clip_from_hub(tmp_path / "hub"), BASE.cliplab_from_hub(tmp_path / "hub")
    assert_same_features(ours, theirs, BASE.images(2))
    assert_eval_preprocessing_is_open_clips(ours, theirs)


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
    ({"timm_pool": "abs_attn"}, r"vision_cfg.timm_model_name='convnext_base' \(timm's ConvNeXt\) needs "
                                r"timm_pool='abs_attn', which the timm tower family 'timm_convnext' does not build"),
    ({"timm_proj": None}, r"needs timm_proj=None"),
    ({"timm_proj": "none", "timm_pool": ""}, r"needs timm_pool=''"),
    ({"patch_dropout": 0.5}, r"needs patch_dropout=0.5"),
])
def test_options_the_family_does_not_build_are_refused_by_name(change, message):
    model_cfg = builtin_open_clip_config("convnext_base")
    model_cfg["vision_cfg"].update(change)
    with pytest.raises(UnsupportedArchitectureError, match=message):
        config_from_open_clip(model_cfg)


def test_no_batch_norm_so_nothing_to_freeze_but_parameters():
    model = create_model("convnext_base", device="meta")
    assert not any(isinstance(module, torch.nn.modules.batchnorm._BatchNorm) for module in model.modules())


def test_channels_last_keeps_its_layout_and_the_features():
    reference = BASE.reference()
    ours = loaded_from(reference, BASE.config())
    images = BASE.images()
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


@pytest.mark.slow
def test_a_real_size_hub_directory_loads_and_exports_back_to_open_clip(tmp_path):
    """convnext_base at real size (151.5M parameters)."""
    assert_real_size_round_trip("convnext_base", HUB_PREPROCESS, tmp_path)

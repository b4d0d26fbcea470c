"""Tower family "timm_vitamin" against open_clip 3.3.0 + timm 1.0.31: a small variant of ViTamin-S
(timm's own model function with a smaller MbConv stem and transformer) with random weights gives
equal features through the family's key rules in both directions (fp32, eval, 1e-5 relative), and
from an open_clip hub directory with open_clip's eval preprocessing; the converter reads timm's facts
(the MbConv stem from the module timm records) for all 15 configs, exports by name and refuses what
it does not build; the lock groups are timm's and the lock is open_clip's; gradient checkpointing
changes nothing; a tiny ViTamin-S trains; a real-size ViTamin-S hub directory loads and exports
back (slow)."""

import pytest
import torch

from cliplab.models import build_model, create_model
from cliplab.models.families.timm_vitamin import TimmVitaminConfig
from cliplab.models.open_clip_config import (builtin_open_clip_config, builtin_open_clip_names, config_from_open_clip,
                                             config_to_open_clip)
from open_clip_preprocess import assert_hub_preprocessing_equals_open_clips
from reference_libraries import assert_relative_close, open_clip, timm
from timm_fixtures import (SmallTimmTower, assert_checkpointing_changes_nothing_and_every_parameter_learns,
                           assert_groups_are_timms, assert_hub_directory_loads_as_open_clips, assert_lock_is_open_clips,
                           assert_real_size_round_trip, assert_refused_by_name, assert_same_features,
                           assert_trains_on_a_csv, noise_manifest, side_by_side)

torch.set_num_threads(2)
NAME = "ViTamin-S"
TINY = {"vision.width": 32, "vision.layers": 1, "vision.heads": 2, "vision.image_size": 32,
        "vision.stem_widths": [8, 16], "vision.stem_depths": [1, 1], "text.width": 32, "text.heads": 2,
        "text.layers": 1, "embed_dim": 16, "preprocess.image_size": 32}


def small_vitamin(side: int = 224) -> SmallTimmTower:
    """ViTamin-S at `side` px (timm's 224: its hub directory reads) with a 2-block transformer of
    width 64 after a 16 / 32 MbConv stem (timm's vitamin_small_224 takes the stem as `embed_cfg`)."""
    vitamin = timm().models.vitamin
    stem = vitamin.VitCfg(embed_dim=(16, 32, 64), depths=(1, 2, 1), stem_width=16,
                          conv_cfg=vitamin.VitConvCfg(norm_layer="layernorm2d", norm_eps=1e-6))
    return SmallTimmTower(NAME, {"depth": 2, "embed_dim": 64, "num_heads": 4, "embed_cfg": stem, "img_size": side},
                          {"width": 64, "layers": 2, "heads": 4, "stem_widths": [16, 32], "stem_depths": [1, 2]}, side)


def test_the_converter_reads_timms_facts():
    def vision(name):
        return config_from_open_clip(builtin_open_clip_config(name)).vision

    assert vision(NAME) == TimmVitaminConfig(
        timm_model_name="vitamin_small_224", image_size=224, width=384, layers=14, heads=6, stem_widths=[64, 128],
        stem_depths=[2, 4], drop_path=0.1)
    assert vision("ViTamin-L2-336") == TimmVitaminConfig(
        timm_model_name="vitamin_large2_336", image_size=336, width=1024, layers=31, heads=16, stem_widths=[160, 320],
        stem_depths=[2, 4], drop_path=0.1)
    # No positions in the XL models: open_clip's image size, whatever timm's (384) says.
    assert vision("ViTamin-XL-384") == TimmVitaminConfig(
        timm_model_name="vitamin_xlarge_384", image_size=256, width=1152, layers=32, heads=16, stem_widths=[192, 384],
        stem_depths=[2, 4], positions=False, drop_path=0.1)
    assert sorted(name for name in builtin_open_clip_names() if name.startswith("ViTamin")) == sorted(
        f"ViTamin-{size}" for size in ("S", "S-LTT", "B", "B-LTT", "L", "L-256", "L-336", "L-384", "L2", "L2-256",
                                       "L2-336", "L2-384", "XL-256", "XL-336", "XL-384"))


def test_a_small_variant_equals_open_clip_through_the_key_rules_both_ways():
    small = small_vitamin(64)
    reference, ours, images = side_by_side(small)
    assert_same_features(ours, reference, images)
    with torch.no_grad():
        assert_relative_close(ours.vision_tower.forward_tokens(images), reference.visual.trunk.forward_features(images))


def test_a_hub_directory_loads_with_open_clips_features_and_eval_preprocessing(tmp_path):
    assert_hub_directory_loads_as_open_clips(small_vitamin(), tmp_path / "hub",
                                             dict(open_clip().get_pretrained_cfg(NAME, "datacomp1b")))


@pytest.mark.parametrize("name", ["ViTamin-S-LTT", "ViTamin-L-384", "ViTamin-XL-384"])
def test_export_names_the_timm_model_and_reads_back(name):
    config = config_from_open_clip(builtin_open_clip_config(name))
    exported = config_to_open_clip(config)
    keys = ("timm_model_name", "image_size", "timm_proj", "timm_drop_path")
    assert {key: exported["vision_cfg"][key] for key in keys} == {
        key: builtin_open_clip_config(name)["vision_cfg"][key] for key in keys}
    assert config_from_open_clip(exported) == config


@pytest.mark.parametrize("change, message", [
    ({"timm_pool": "token"}, r"needs global_pool='token', which the timm tower family 'timm_vitamin' does not build"),
    ({"timm_proj": "mlp"}, r"needs timm_proj='mlp'"),
    ({"image_size": 256}, r"vision_cfg.image_size=256 differs from timm's img_size 224"),
])
def test_options_the_family_does_not_build_are_refused_by_name(change, message):
    assert_refused_by_name(NAME, change, message)


def test_the_groups_are_timms_and_the_lock_is_open_clips():
    """Groups as timm's VisionTransformer matcher counts them: the MbConv stem with the positions;
    each block; fc_norm (4 here); open_clip's `visual.head.proj` stays trainable."""
    small = small_vitamin(64)
    assert len(build_model(small.config()).vision_tower.parameter_groups()) == 4
    assert_groups_are_timms(small)
    assert_lock_is_open_clips(small, [0, 1, 2, 4])


def test_gradient_checkpointing_and_drop_path_change_nothing_and_every_parameter_learns():
    assert_checkpointing_changes_nothing_and_every_parameter_learns(small_vitamin(64))


def test_a_tiny_override_trains_on_a_csv(tmp_path):
    assert_trains_on_a_csv(NAME, TINY, noise_manifest(tmp_path / "data", 8), tmp_path)


def test_fsdp_units_are_the_mbconv_stages_and_the_blocks():
    model = create_model(NAME, device="meta", **TINY)
    tower = model.vision_tower
    assert model.fsdp_units() == [*tower.patch_embedding.stages, *tower.transformer.blocks,
                                  *model.text_tower.transformer.blocks]


# open_clip's pretrained config of the ViTamin hub directories: OpenAI's statistics, shortest side,
# bicubic; ViTamin-XL-384 at open_clip's 256.
@pytest.mark.parametrize("name", [NAME, "ViTamin-XL-384"])
def test_eval_preprocessing_of_the_hub_config_equals_open_clips(name, tmp_path):
    assert_hub_preprocessing_equals_open_clips(name, "datacomp1b", tmp_path)


@pytest.mark.slow
def test_a_real_size_hub_directory_loads_and_exports_back_to_open_clip(tmp_path):
    """ViTamin-S at real size (62M parameters)."""
    assert_real_size_round_trip(NAME, dict(open_clip().get_pretrained_cfg(NAME, "datacomp1b")), tmp_path)

"""Tower family "timm_vit_relpos" against open_clip 3.3.0 + timm 1.0.31: a small variant of
`vit_relpos_medium_patch16_cls_224` (timm's own options: class token, no qkv bias, layer scale,
relative position MLP in every block; fewer and narrower blocks, small images) with random weights
gives equal features through the family's key rules in both directions (fp32, eval, 1e-5
relative); the converter reads timm's facts; locking follows open_clip's `TimmModel.lock`."""

import dataclasses

import pytest
import torch

from cliplab.data.preprocess_config import PreprocessConfig
from cliplab.models import build_model
from cliplab.models.families.timm_vit_relpos import TimmVitRelPosConfig
from cliplab.models.layers.relative_position import relative_offsets
from cliplab.models.open_clip_config import builtin_open_clip_config, config_from_open_clip, config_to_open_clip
from cliplab.pretrained.key_maps import from_cliplab, to_cliplab
from cliplab.pretrained.open_clip_keys import open_clip_rules
from reference_libraries import (assert_relative_close, open_clip_model, randomize_, reference_mode,
                                 small_open_clip_cfg, timm)
from timm_fixtures import assert_refused_by_name

torch.set_num_threads(2)
NAME = "vit_relpos_medium_patch16_cls_224"
SMALL_TIMM = {"depth": 2, "embed_dim": 64, "num_heads": 4, "img_size": 32, "patch_size": 8, "rel_pos_dim": 16}


def small_config():
    full = config_from_open_clip(builtin_open_clip_config(NAME))
    vision = dataclasses.replace(full.vision, width=64, layers=2, heads=4, image_size=32, patch_size=8,
                                 position_width=16)
    text = dataclasses.replace(full.text, width=32, heads=2, layers=2)
    return dataclasses.replace(full, embed_dim=32, vision=vision, text=text, preprocess=PreprocessConfig(image_size=32))


def loaded_pair():
    model_cfg = small_open_clip_cfg(NAME, embed_dim=32, text_cfg={"width": 32, "heads": 2, "layers": 2})
    reference = randomize_(open_clip_model(model_cfg, timm_kwargs=SMALL_TIMM), seed=3)
    ours = build_model(small_config()).eval()
    rules = open_clip_rules(ours.config)
    ours.load_state_dict(to_cliplab(reference.state_dict(), ours.state_dict(), rules, "open_clip"))
    return reference, ours, rules


def test_a_small_hub_directory_loads_with_open_clips_features(tmp_path):
    """cliplab's reader of an open_clip hub directory of the small variant."""
    from timm_fixtures import SmallTimmTower, assert_same_features, smaller_timm_facts

    small = SmallTimmTower(NAME, SMALL_TIMM, {"width": 64, "layers": 2, "heads": 4, "patch_size": 8,
                                              "position_width": 16}, 32)
    small.write_hub(tmp_path / "hub", {"interpolation": "bicubic", "resize_mode": "shortest"})
    with smaller_timm_facts(small.model_cfg()["vision_cfg"]["timm_model_name"], small.timm_kwargs):
        ours = small.cliplab_from_hub(tmp_path / "hub")
    assert_same_features(ours, small.open_clip_from_hub(tmp_path / "hub"), small.images(2))


def test_the_converter_reads_timms_facts_and_exports_the_name():
    config = config_from_open_clip(builtin_open_clip_config(NAME))
    assert config.vision == TimmVitRelPosConfig(timm_model_name=NAME, image_size=224, width=512, heads=8,
                                                qkv_bias=False, class_token=True, pool="token", position_width=256)
    assert config_from_open_clip(config_to_open_clip(config)) == config


def test_the_offset_table_and_index_are_timms():
    layers = timm().layers
    log_offsets, index = relative_offsets(5)
    expected_offsets = layers.pos_embed_rel.gen_relative_log_coords((5, 5), mode="cr").reshape(-1, 2)
    assert torch.equal(log_offsets, expected_offsets)
    assert torch.equal(index, layers.pos_embed_rel.gen_relative_position_index((5, 5)))


def test_a_small_variant_equals_open_clip_through_the_key_rules_both_ways():
    reference, ours, rules = loaded_pair()
    theirs_state = reference.state_dict()
    back = from_cliplab(ours.state_dict(), rules)
    assert sorted(back) == sorted(theirs_state)
    assert all(torch.equal(back[key], theirs_state[key]) for key in back)
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    tokens = torch.randint(1, 49408, (3, 77), generator=torch.Generator().manual_seed(5))
    with torch.no_grad(), reference_mode():
        assert_relative_close(ours.encode_image(images), reference.encode_image(images))
        assert_relative_close(ours.encode_text(tokens), reference.encode_text(tokens))
        assert_relative_close(ours.vision_tower.forward_tokens(images),
                              reference.visual.trunk.forward_features(images)[:, 1:])
    # Locking: open_clip freezes timm's groups of the trunk and leaves visual.head.proj trainable.
    for unlocked in (0, 1):
        reference.lock_image_tower(unlocked_groups=unlocked)
        ours.lock_image_tower(unlocked_groups=unlocked)
        ours_trainable = {key for key, parameter in ours.named_parameters() if parameter.requires_grad}
        theirs_trainable = {key for key, parameter in reference.named_parameters()
                            if parameter.requires_grad and key.startswith("visual.")}
        assert {key for key in from_cliplab({key: torch.empty(0) for key in ours_trainable}, rules)
                if key.startswith("visual.")} == theirs_trainable
        for parameter in [*ours.parameters(), *reference.parameters()]:
            parameter.requires_grad_(True)


def test_the_position_mlp_drops_out_only_in_training():
    tower = build_model(small_config()).vision_tower
    block = tower.transformer.blocks[0]
    block.eval()
    assert torch.equal(block.relative_position(), block.relative_position())
    assert block.relative_position().shape == (1, 4, 17, 17)
    assert not block.relative_position()[:, :, 0].any() and not block.relative_position()[:, :, :, 0].any()
    block.train()
    torch.manual_seed(0)
    assert not torch.equal(block.relative_position(), block.relative_position())


@pytest.mark.parametrize("change, message", [({"timm_pool": "map"}, r"needs global_pool='map', which the timm tower "
                                                                    r"family 'timm_vit_relpos' does not build yet")])
def test_options_the_family_does_not_build_are_refused_by_name(change, message):
    assert_refused_by_name(NAME, change, message)

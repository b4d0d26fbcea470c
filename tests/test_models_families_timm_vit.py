"""Tower family "timm_vit" against open_clip 3.3.0 + timm 1.0.31: a small variant of
`vit_medium_patch16_gap_256` (timm's own options, fewer and narrower blocks) with random weights
gives equal features through the family's key rules in both directions (fp32, eval, 1e-5
relative); the open_clip converter reads timm's facts and refuses what it does not build; a
real-size export loads in open_clip (slow)."""

import dataclasses

import pytest
import torch

from cliplab.data.preprocess_config import PreprocessConfig
from cliplab.data.tokenizer_openai import openai_bpe_tokenizer
from cliplab.errors import UnsupportedArchitectureError
from cliplab.models import build_model
from cliplab.models.families.timm_vit import TimmVitConfig
from cliplab.models.open_clip_config import builtin_open_clip_config, config_from_open_clip, config_to_open_clip
from cliplab.pretrained.key_maps import from_cliplab, to_cliplab
from cliplab.pretrained.open_clip_keys import open_clip_rules
from reference_libraries import (assert_relative_close, open_clip, open_clip_model, randomize_, reference_mode,
                                 small_open_clip_cfg)

torch.set_num_threads(2)
NAME = "vit_medium_patch16_gap_256"
SMALL_TIMM = {"depth": 2, "embed_dim": 64, "num_heads": 4, "img_size": 32, "patch_size": 8}
TEXTS = ["a photo of a cat!", "two dogs", ""]


def small_pair():
    """(open_clip's small model with random weights, cliplab's config of the same sizes)."""
    model_cfg = small_open_clip_cfg(NAME, embed_dim=32, text_cfg={"width": 32, "heads": 2, "layers": 2})
    reference = randomize_(open_clip_model(model_cfg, timm_kwargs=SMALL_TIMM), seed=3)
    full = config_from_open_clip(model_cfg)
    vision = dataclasses.replace(full.vision, width=64, layers=2, heads=4, image_size=32, patch_size=8)
    return reference, dataclasses.replace(full, vision=vision, preprocess=PreprocessConfig(image_size=32))


def test_the_converter_reads_timms_facts_for_the_gap_vit():
    config = config_from_open_clip(builtin_open_clip_config(NAME)).vision
    assert config == TimmVitConfig(timm_model_name=NAME, image_size=256, patch_size=16, width=512, layers=12,
                                   heads=8, qkv_bias=False, layer_scale=1e-6, class_token=False, pool="avg",
                                   fc_norm=False, projection="linear")


def test_a_small_variant_equals_open_clip_through_the_key_rules_both_ways():
    reference, config = small_pair()
    ours = build_model(config).eval()
    rules = open_clip_rules(config)
    theirs_state = reference.state_dict()
    ours.load_state_dict(to_cliplab(theirs_state, ours.state_dict(), rules, "open_clip"))
    back = from_cliplab(ours.state_dict(), rules)
    assert sorted(back) == sorted(theirs_state)
    assert all(torch.equal(back[name], theirs_state[name]) for name in back)
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    tokens = openai_bpe_tokenizer(77)(TEXTS)
    with torch.no_grad(), reference_mode():
        assert_relative_close(ours.encode_image(images), reference.encode_image(images))
        assert_relative_close(ours.encode_text(tokens), reference.encode_text(tokens))
        assert_relative_close(ours.vision_tower.forward_tokens(images), reference.visual.trunk.forward_features(images))


def test_export_names_the_timm_model_and_refuses_other_sizes():
    config = config_from_open_clip(builtin_open_clip_config(NAME))
    exported = config_to_open_clip(config)
    assert exported["vision_cfg"] == {"timm_model_name": NAME, "timm_model_pretrained": False, "timm_pool": "avg",
                                      "timm_proj": "linear", "timm_proj_bias": False, "image_size": 256}
    assert config_from_open_clip(exported) == config
    with pytest.raises(UnsupportedArchitectureError, match=r"open_clip cannot represent this model: timm's "
                                                           r"vit_medium_patch16_gap_256 is not this tower: "
                                                           r"vision.image_size=32 \(timm: 256\)"):
        config_to_open_clip(small_pair()[1])


@pytest.mark.parametrize("change, message", [
    ({"timm_pool": "map"}, r"needs global_pool='map', which the timm tower family 'timm_vit' does not build yet"),
    ({"timm_proj": "mlp"}, r"needs timm_proj='mlp'"),
    ({"timm_drop_path": 0.1}, r"needs timm_drop_path=0.1"),
    ({"image_size": 224}, r"vision_cfg.image_size=224 differs from timm's img_size 256"),
])
def test_options_the_family_does_not_build_are_refused_by_name(change, message):
    model_cfg = builtin_open_clip_config(NAME)
    model_cfg["vision_cfg"].update(change)
    with pytest.raises(UnsupportedArchitectureError, match=message):
        config_from_open_clip(model_cfg)


@pytest.mark.slow
def test_a_real_size_export_loads_in_open_clip_with_equal_features(tmp_path):
    """The whole round trip at real size (102M parameters): cliplab's model exported to an open_clip
    hub directory, read by open_clip (its own config and timm), and read back by cliplab."""
    import cliplab
    from cliplab.bundle import load_model

    torch.manual_seed(0)
    ours = build_model(config_from_open_clip(builtin_open_clip_config(NAME))).eval()
    directory = cliplab.export(ours, openai_bpe_tokenizer(77), tmp_path / "hub", format="open_clip")
    theirs = open_clip().create_model(f"local-dir:{directory}", pretrained=f"{directory}/open_clip_model.safetensors")
    again = load_model(directory).model
    images = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(5))
    with torch.no_grad(), reference_mode():
        expected = theirs.eval().encode_image(images)
        assert_relative_close(ours.encode_image(images), expected)
        assert_relative_close(again.encode_image(images), expected)

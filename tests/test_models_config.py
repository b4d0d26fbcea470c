"""ModelConfig and friends: validation, dict round trip, the override scheme."""

import json
import math

import pytest

from cliplab.data.transforms import PreprocessConfig
from cliplab.models.config import (DecoderConfig, ModelConfig, TextConfig, VisionConfig,
                                   apply_overrides)


def tiny_values(**top):
    values = {
        "kind": "clip", "embed_dim": 16,
        "vision": {"kind": "vit", "image_size": 8, "patch_size": 4, "width": 16, "layers": 1, "heads": 2},
        "text": {"context_length": 6, "vocab_size": 50, "width": 16, "layers": 1, "heads": 2},
    }
    values.update(top)
    return values


def test_round_trip_through_json_is_identity():
    config = ModelConfig.from_dict(tiny_values())
    again = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert again.to_dict() == config.to_dict()


def test_preprocess_image_size_defaults_to_vision_and_must_match():
    config = ModelConfig.from_dict(tiny_values())
    assert config.preprocess.image_size == 8
    with pytest.raises(ValueError, match=r"preprocess.image_size \(9\) must equal vision.image_size \(8\)"):
        ModelConfig.from_dict(tiny_values(preprocess={"image_size": 9}))


def test_kind_defaults_for_logit_scale_and_bias():
    clip = ModelConfig.from_dict(tiny_values())
    siglip = ModelConfig.from_dict(tiny_values(kind="siglip"))
    assert clip.init_logit_scale == pytest.approx(math.log(1 / 0.07)) and clip.init_logit_bias is None
    assert siglip.init_logit_scale == pytest.approx(math.log(10)) and siglip.init_logit_bias == -10.0
    with pytest.raises(ValueError, match="init_logit_bias applies to kind='siglip' only"):
        ModelConfig.from_dict(tiny_values(init_logit_bias=-5.0))


def test_unknown_keys_are_named_with_their_section():
    values = tiny_values()
    values["vision"]["widht"] = 3
    with pytest.raises(ValueError, match=r"unknown config keys \['vision.widht'\]"):
        ModelConfig.from_dict(values)
    with pytest.raises(ValueError, match=r"unknown config keys \['embed_dimm'\]"):
        ModelConfig.from_dict(tiny_values(embed_dimm=3))


@pytest.mark.parametrize("section, key, value, message", [
    ("vision", "heads", 3, r"vision.width \(16\) must be divisible by vision.heads \(3\)"),
    ("vision", "patch_size", 3, r"vision.image_size \(8\) must be divisible by vision.patch_size \(3\)"),
    ("vision", "pool", "max", "vision.pool must be one of"),
    ("vision", "patch_dropout", 1.0, r"vision.patch_dropout must be a float in \[0, 1\)"),
    ("text", "pool", "first", "text.pool must be one of"),
    ("text", "position", "alibi", "text.position must be one of"),
    ("text", "pad_id", 50, r"text.pad_id must be an int in \[0, vocab_size=50\)"),
    ("text", "layers", 0, "text.layers must be a positive int"),
])
def test_bad_values_name_the_field(section, key, value, message):
    values = tiny_values()
    values[section][key] = value
    with pytest.raises(ValueError, match=message):
        ModelConfig.from_dict(values)


def test_conv_tower_constraints():
    with pytest.raises(ValueError, match="patch_dropout applies to kind='vit' only"):
        VisionConfig(kind="conv", image_size=8, width=16, layers=2, patch_dropout=0.5)
    with pytest.raises(ValueError, match=r"vision.width \(12\) must be divisible by 2\*\*vision.layers \(8\)"):
        VisionConfig(kind="conv", image_size=28, width=12, layers=3)
    assert VisionConfig(kind="conv", image_size=28, width=16, layers=2).grid_size == 7
    assert VisionConfig(kind="conv", image_size=28, width=16, layers=3).grid_size == 4


def test_coca_requires_decoder_and_causal_text():
    with pytest.raises(ValueError, match="kind='coca' needs decoder"):
        ModelConfig.from_dict(tiny_values(kind="coca"))
    values = tiny_values(kind="coca", decoder={"layers": 1, "heads": 2})
    values["text"]["causal"] = False
    with pytest.raises(ValueError, match="kind='coca' needs text.causal=True"):
        ModelConfig.from_dict(values)
    with pytest.raises(ValueError, match="decoder applies to kind='coca' only"):
        ModelConfig.from_dict(tiny_values(decoder={"layers": 1}))


def test_configs_are_keyword_only():
    with pytest.raises(TypeError):
        TextConfig(6, 50, 16, 1)
    assert DecoderConfig(layers=2).heads == 8
    assert PreprocessConfig(image_size=4).resize_mode == "shortest"


def test_overrides_dotted_top_level_and_nested_dict():
    values = tiny_values()
    merged = apply_overrides(values, {"embed_dim": 32, "vision.width": 8, "text": {"layers": 3}})
    assert merged["embed_dim"] == 32
    assert merged["vision"]["width"] == 8 and merged["vision"]["heads"] == 2
    assert merged["text"]["layers"] == 3 and merged["text"]["width"] == 16
    assert values["embed_dim"] == 16, "the input dict must not change"
    created = apply_overrides(values, {"preprocess.mean": [0.5, 0.5, 0.5]})
    assert ModelConfig.from_dict(created).preprocess.mean == (0.5, 0.5, 0.5)


def test_the_preprocessing_follows_an_overridden_tower_size_unless_set_too():
    # Before: create_model("ViT-B-32", **{"vision.image_size": 64}) raised "preprocess.image_size (224)
    # must equal vision.image_size (64)".
    from cliplab.errors import UserError
    from cliplab.models import create_model

    values = ModelConfig.from_dict(tiny_values()).to_dict()  # preprocess.image_size written out, as saved configs are
    for overrides in ({"vision.image_size": 64}, {"vision": {"image_size": 64}},
                      {"vision.image_size": 64, "preprocess.image_size": 64}):
        config = ModelConfig.from_dict(apply_overrides(values, overrides))
        assert config.vision.image_size == config.preprocess.image_size == 64, overrides
    assert create_model("ViT-B-32", device="meta", **{"vision.image_size": 64}).config.preprocess.image_size == 64
    with pytest.raises(UserError) as raised:
        ModelConfig.from_dict(apply_overrides(values, {"vision.image_size": 64, "preprocess.image_size": 32}))
    assert str(raised.value) == ("preprocess.image_size (32) must equal vision.image_size (64): the images are made "
                                 "the size the tower takes; set only vision.image_size (the preprocessing follows "
                                 "it), or both to the same size")
    assert isinstance(raised.value, ValueError)  # callers that catch ValueError still do


def test_overrides_reject_bad_paths():
    with pytest.raises(ValueError, match="'embed_dim' is not a config section"):
        apply_overrides(tiny_values(), {"embed_dim.width": 3})
    with pytest.raises(ValueError, match="dotted paths"):
        apply_overrides(tiny_values(), {"vision..width": 3})


def test_missing_required_keys_are_named():
    values = tiny_values()
    del values["text"]["vocab_size"]
    with pytest.raises(ValueError, match=r"missing required keys \['text.vocab_size'\]"):
        ModelConfig.from_dict(values)
    with pytest.raises(ValueError, match="missing the 'vision' section"):
        ModelConfig.from_dict({"embed_dim": 4, "text": values["text"]})

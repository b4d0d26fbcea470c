"""open_clip model configs <-> ModelConfig: every built-in name builds with exactly open_clip's
parameter count and tensor layout (both built on the meta device), the export converter inverts
the import one, and what cliplab cannot build is refused by name."""

import pytest
import torch

from cliplab.errors import UserError
from cliplab.models import create_model, list_models
from cliplab.models.open_clip_config import (UnsupportedArchitectureError, builtin_open_clip_config,
                                             builtin_open_clip_names, config_from_open_clip, config_to_open_clip)
from cliplab.pretrained.key_maps import check_state_dict, from_cliplab
from cliplab.pretrained.open_clip_keys import open_clip_rules, open_clip_text_prefix
from reference_libraries import open_clip, open_clip_on_meta

NAMES = builtin_open_clip_names()


def parameter_count(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def test_the_58_configs_without_timm_or_hf_towers_are_shipped_and_registered():
    library = open_clip()
    expected = [name for name in library.list_models()
                if not library.get_model_config(name).get("vision_cfg", {}).get("timm_model_name")
                and not library.get_model_config(name).get("text_cfg", {}).get("hf_model_name")]
    assert sorted(NAMES) == sorted(expected) and len(NAMES) == 58
    assert set(NAMES) <= set(list_models())
    for name in NAMES:
        assert builtin_open_clip_config(name) == library.get_model_config(name)


def test_every_builtin_has_open_clips_parameter_count_and_tensor_layout():
    """Both built on meta: counts equal, and cliplab's state dict maps name for name and shape for
    shape onto open_clip's (so open_clip's checkpoints of every built-in load)."""
    mismatched = {}
    for name in NAMES:
        ours, theirs = create_model(name, device="meta"), open_clip_on_meta(name)
        if parameter_count(ours) != parameter_count(theirs):
            mismatched[name] = (parameter_count(ours), parameter_count(theirs))
        rules = open_clip_rules(ours.config, open_clip_text_prefix(ours.config))
        check_state_dict(from_cliplab(ours.state_dict(), rules), theirs.state_dict(), name)
    assert mismatched == {}


def test_export_converter_inverts_the_import_one_for_every_builtin():
    for name in NAMES:
        config = config_from_open_clip(builtin_open_clip_config(name))
        assert config_from_open_clip(config_to_open_clip(config)) == config, name


def test_mapping_of_representative_configs():
    resnet = config_from_open_clip(builtin_open_clip_config("RN50-quickgelu"))
    assert (resnet.vision.kind, resnet.vision.layers, resnet.vision.heads) == ("resnet", [3, 4, 6, 3], 32)
    assert resnet.vision.projection == "linear_bias" and resnet.vision.activation == "quick_gelu"
    assert (resnet.text.pool, resnet.text.padding_mask, resnet.text.activation) == ("argmax", "none", "quick_gelu")
    clipa = config_from_open_clip(builtin_open_clip_config("ViT-L-14-CLIPA"))
    assert (clipa.vision.pool, clipa.vision.class_token, clipa.vision.norm_pre, clipa.vision.final_norm) == (
        "mean", True, False, "pooled")
    assert (clipa.text.pool, clipa.text.causal, clipa.text.context_length) == ("last", False, 32)
    coca = config_from_open_clip(builtin_open_clip_config("coca_ViT-B-32"))
    assert coca.kind == "coca" and coca.decoder.layout == "split"
    assert (coca.vision.pool, coca.vision.attention_pool_width, coca.vision.output_width) == ("attention", 512, 512)
    assert (coca.text.pool, coca.text.padding_mask, coca.text.position_count) == ("cls", "shifted", 77)
    worldwide = config_from_open_clip(builtin_open_clip_config("ViT-H-14-worldwide"))
    assert (worldwide.text.pool, worldwide.text.eos_id, worldwide.vision.heads) == ("eos", 2, 16)
    alt = config_from_open_clip(builtin_open_clip_config("ViT-M-16-alt"))
    assert alt.vision.layer_scale == pytest.approx(1e-4)


@pytest.mark.parametrize("change, message", [
    ({"vision_cfg": {"timm_model_name": "vit_base_patch16_siglip_224"}}, r"vision_cfg.timm_model_name"),
    ({"text_cfg": {"hf_model_name": "xlm-roberta-base"}}, r"text_cfg.hf_model_name"),
    ({"vision_cfg": {"qk_norm": True}}, r"vision_cfg.qk_norm=True needs a tower cliplab does not build"),
    ({"vision_cfg": {"pos_embed_type": "sin_cos_2d"}}, r"vision_cfg.pos_embed_type"),
    ({"text_cfg": {"pool_type": "first"}}, r"text_cfg.pool_type='first'"),
    ({"vision_cfg": {"widht": 3}}, r"vision_cfg has keys cliplab does not know: \['widht'\]"),
    ({"vision_cfg": {"image_size": [224, 256]}}, r"square images"),
])
def test_unsupported_configs_are_refused_by_key(change, message):
    values = builtin_open_clip_config("ViT-B-32")
    for section, update in change.items():
        values[section].update(update)
    with pytest.raises(UnsupportedArchitectureError, match=message):
        config_from_open_clip(values)


def test_invalid_numbers_become_a_user_error():
    values = builtin_open_clip_config("ViT-B-32")
    values["text_cfg"]["heads"] = 7
    with pytest.raises(UserError, match=r"open_clip model_cfg: text.width \(512\) must be divisible by text.heads"):
        config_from_open_clip(values)

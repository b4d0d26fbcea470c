"""open_clip model configs <-> ModelConfig: all 144 of open_clip 3.3.0's built-in names are
shipped; every one cliplab builds has exactly open_clip's (with timm 1.0.31's towers) parameter
count and tensor layout (both built on the meta device), every other is refused in one line naming
the tower family it needs; the export converter inverts the import one, and what cliplab cannot
build is refused by name."""

import re

import pytest

from cliplab.errors import UserError
from cliplab.models import create_model, list_models
from cliplab.models.families import MISSING_FAMILIES, TOWER_FAMILIES
from cliplab.models.open_clip_config import (UnsupportedArchitectureError, builtin_open_clip_config,
                                             builtin_open_clip_names, config_from_open_clip, config_to_open_clip,
                                             known_open_clip_names)
from cliplab.models.timm_models import timm_family_kind, timm_model, timm_model_names
from cliplab.pretrained.key_maps import check_state_dict, from_cliplab
from cliplab.pretrained.open_clip_keys import open_clip_rules, open_clip_text_prefix
from hf_text_fixtures import use_cache, write_cache
from reference_libraries import open_clip, open_clip_on_meta, open_clip_parameter_count, parameter_count

NAMES = builtin_open_clip_names()


@pytest.fixture(scope="module", autouse=True)
def hugging_face_cache(tmp_path_factory):
    """The ten HF-text configs' text models' config.json at their published sizes in a Hugging Face
    cache that both cliplab and open_clip (transformers' AutoConfig, offline) read by name."""
    with pytest.MonkeyPatch.context() as patch:
        use_cache(patch, write_cache(tmp_path_factory.mktemp("hf_cache")))
        yield
OPEN_CLIP_NAMES = known_open_clip_names()
REFUSAL = re.compile(r"open_clip model '(?P<name>[^']+)': (?P<key>vision_cfg\.timm_model_name|text_cfg\.hf_model_name)"
                     r"='[^']+'.* family '(?P<kind>[a-z_]+)'")


def test_all_144_configs_are_shipped_and_the_buildable_ones_registered():
    library = open_clip()
    assert sorted(OPEN_CLIP_NAMES) == sorted(library.list_models()) and len(OPEN_CLIP_NAMES) == 144
    for name in OPEN_CLIP_NAMES:
        assert builtin_open_clip_config(name) == library.get_model_config(name)
    assert set(NAMES) <= set(list_models()) and not (set(OPEN_CLIP_NAMES) - set(NAMES)) & set(list_models())
    native = [name for name in OPEN_CLIP_NAMES
              if not library.get_model_config(name).get("vision_cfg", {}).get("timm_model_name")
              and not library.get_model_config(name).get("text_cfg", {}).get("hf_model_name")]
    assert len(native) == 58 and set(native) <= set(NAMES)


def _families_of(model_cfg: dict) -> set[str]:
    """The families that could be the first to refuse `model_cfg`: its image tower's, its text tower's."""
    timm_name = model_cfg.get("vision_cfg", {}).get("timm_model_name")
    vision = timm_family_kind(timm_name) if timm_name else "vit"
    return {vision, "hf_text" if model_cfg.get("text_cfg", {}).get("hf_model_name") else "transformer"}


@pytest.mark.parametrize("name", OPEN_CLIP_NAMES)
def test_every_open_clip_name_builds_with_open_clips_count_and_layout_or_is_refused_naming_its_family(name):
    """Built: both on meta, counts equal, and cliplab's state dict maps name for name and shape for
    shape onto open_clip's (so open_clip's checkpoints load). Not built: one line naming the family
    to add (a family helper flips a name from this branch to the other)."""
    if name not in NAMES:
        with pytest.raises(UnsupportedArchitectureError) as refused:
            create_model(name, device="meta")
        message = str(refused.value)
        match = REFUSAL.match(message)
        assert match and "\n" not in message and match["name"] == name, message
        registered = {family.kind for family in TOWER_FAMILIES}
        assert match["kind"] in _families_of(builtin_open_clip_config(name)) & (set(MISSING_FAMILIES) | registered)
        return
    ours = create_model(name, device="meta")
    assert parameter_count(ours) == open_clip_parameter_count(name)
    custom_text = builtin_open_clip_config(name).get("custom_text", False)  # open_clip's CustomTextCLIP: text.*
    rules = open_clip_rules(ours.config, "text." if custom_text else open_clip_text_prefix(ours.config))
    check_state_dict(from_cliplab(ours.state_dict(), rules), open_clip_on_meta(name).state_dict(), name)


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
    ({"vision_cfg": {"timm_model_name": "resnet18"}}, r"vision_cfg.timm_model_name='resnet18' is not a timm model "
                                                      r"cliplab knows"),
    ({"text_cfg": {"hf_model_name": "xlm-roberta-base", "hf_pooler_type": "max_pooler"}},
     r"text_cfg.hf_pooler_type='max_pooler': the family 'hf_text' builds"),
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


def test_a_timm_model_of_an_unregistered_family_is_refused_naming_the_family():
    name = next((name for name in timm_model_names() if timm_family_kind(name) in MISSING_FAMILIES), None)
    if name is None:
        pytest.skip("every timm family open_clip's configs name is registered")
    values = builtin_open_clip_config("ViT-B-32")
    values["vision_cfg"]["timm_model_name"] = name
    message = (rf"vision_cfg.timm_model_name='{name}' \(timm's {timm_model(name)['class']}\) needs the timm tower "
               rf"family '{timm_family_kind(name)}', which cliplab does not build yet")
    with pytest.raises(UnsupportedArchitectureError, match=message):
        config_from_open_clip(values)


def test_invalid_numbers_become_a_user_error():
    values = builtin_open_clip_config("ViT-B-32")
    values["text_cfg"]["heads"] = 7
    with pytest.raises(UserError, match=r"open_clip model_cfg: text.width \(512\) must be divisible by text.heads"):
        config_from_open_clip(values)

"""A model's weights at another input size (`models.resized_model`) against open_clip 3.3.0 and
timm 1.0.31: open_clip's own ViT resized by open_clip's `resize_pos_embed` and `resize_text_pos_embed`
on the same state dict, timm's ViTs (class token in the table, outside it, none) and Evas (rotary
positions with a reference grid, with and without a class token) by timm's `set_input_size` as
open_clip's --force-image-size calls it: equal position tables within 1e-6 and equal features at
the new size (1e-5 relative). Families without size-dependent tables change nothing; Swin refuses a
size that narrows a window; an entry no rule resizes is refused naming it; the one-tensor reader
gives what the whole state dict gives."""

import dataclasses
import types

import pytest
import torch

from cliplab.models import build_model, create_model, get_model_config
from cliplab.models.config import ModelConfig
from cliplab.models.families import timm_vit as timm_vit_family
from cliplab.models.open_clip_config import config_from_open_clip
from cliplab.models.resized_model import CONTEXT_EXTENSIONS, InputResize, resized_config
from cliplab.pretrained.key_maps import to_cliplab
from cliplab.pretrained.open_clip_keys import open_clip_rules

from finetune_fixtures import SMALL_OPEN_CLIP_CFG
from reference_libraries import assert_relative_close, open_clip, open_clip_model, randomize_, reference_mode
import test_models_families_timm_eva as eva_tests
import test_models_families_timm_fastvit as fastvit_tests
import test_models_families_timm_swin as swin_tests
import test_models_families_timm_vit as timm_vit_tests
import test_models_families_timm_vit_relpos as relpos_tests
import test_models_families_timm_vitamin as vitamin_tests
from timm_fixtures import loaded_from

torch.set_num_threads(2)


def resized_model(model, **sizes):
    """`model` (eval) at `sizes` with its weights carried over, and the InputResize that did it."""
    resize = InputResize(model.config, resized_config(model.config, **sizes), CONTEXT_EXTENSIONS["interpolate"])
    resized = build_model(resize.new).eval()
    resized.load_state_dict(resize.resize_state_dict(model.state_dict()))
    return resized, resize


def _images(side: int) -> torch.Tensor:
    return torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(4))


def test_open_clips_vit_resized_by_open_clips_functions_equals_ours():
    small = {**SMALL_OPEN_CLIP_CFG, "vision_cfg": {**SMALL_OPEN_CLIP_CFG["vision_cfg"]}}
    larger = {**small, "vision_cfg": {**small["vision_cfg"], "image_size": 56},
              "text_cfg": {**small["text_cfg"], "context_length": 100}}
    reference = randomize_(open_clip_model(small), seed=3)
    ours = build_model(config_from_open_clip(small)).eval()
    ours.load_state_dict(to_cliplab(reference.state_dict(), ours.state_dict(), open_clip_rules(ours.config, ""),
                                    "open_clip"))
    reference_larger = open_clip_model(larger).eval()
    state = reference.state_dict()
    open_clip().model.resize_pos_embed(state, reference_larger)
    open_clip().model.resize_text_pos_embed(state, reference_larger)
    reference_larger.load_state_dict(state)

    resized, resize = resized_model(ours, image_size=56, context_length=100)
    assert resize.describe() == ["vision_tower.position_embedding [17, 32] -> [50, 32]",
                                 "text_tower.position_embedding [77, 32] -> [100, 32]"]
    torch.testing.assert_close(resized.vision_tower.position_embedding, state["visual.positional_embedding"],
                               rtol=0, atol=1e-6)
    torch.testing.assert_close(resized.text_tower.position_embedding, state["positional_embedding"], rtol=0, atol=1e-6)
    assert resized.config.preprocess.image_size == 56
    tokens = torch.randint(1, 49407, (2, 100), generator=torch.Generator().manual_seed(5))
    tokens[:, 90] = 49407
    with torch.no_grad(), reference_mode():
        assert_relative_close(resized.encode_image(_images(56)), reference_larger.encode_image(_images(56)))
        assert_relative_close(resized.encode_text(tokens), reference_larger.encode_text(tokens))


def test_a_shorter_context_is_interpolated_as_open_clip_does():
    model = create_model("tiny-vit").eval()
    resized, _ = resized_model(model, context_length=20)
    state = {"positional_embedding": model.text_tower.position_embedding.detach().clone()}
    open_clip().model.resize_text_pos_embed(state, types.SimpleNamespace(positional_embedding=torch.empty(20, 128)))
    torch.testing.assert_close(resized.text_tower.position_embedding, state["positional_embedding"], rtol=0, atol=1e-6)


# timm's ViTs whose position tables differ: none for a class token (SigLIP), a class token outside
# the table (MobileCLIP2-B, timm's no_embed_class), its row in the table (MobileCLIP2-L-14).
@pytest.mark.parametrize("name, larger", [("ViT-B-16-SigLIP", 48), ("MobileCLIP2-B", 64), ("MobileCLIP2-L-14", 56)])
def test_timm_vits_resized_as_timms_set_input_size(name, larger):
    reference, ours, _ = timm_vit_tests.loaded_pair(name)
    reference.visual.set_input_size(larger)
    resized, _ = resized_model(ours, image_size=larger)
    torch.testing.assert_close(resized.vision_tower.position_embedding, reference.visual.trunk.pos_embed[0],
                               rtol=0, atol=1e-6)
    with torch.no_grad(), reference_mode():
        assert_relative_close(resized.encode_image(_images(larger)), reference.encode_image(_images(larger)))


@pytest.mark.parametrize("variant", ["EVA02", "PE-Core", "PE-Core-no-class-token"])
def test_evas_resized_as_timms_set_input_size_with_the_rotary_grid_rescaled(variant):
    reference, ours = eva_tests.loaded_pair(variant)
    assert ours.config.vision.rope and ours.config.vision.rope_reference_grid is not None
    reference.visual.set_input_size(48)
    resized, _ = resized_model(ours, image_size=48)
    assert resized.config.vision.rope_reference_grid == ours.config.vision.rope_reference_grid
    torch.testing.assert_close(resized.vision_tower.position_embedding, reference.visual.trunk.pos_embed[0],
                               rtol=0, atol=1e-6)
    with torch.no_grad(), reference_mode():
        assert_relative_close(resized.encode_image(_images(48)), reference.encode_image(_images(48)))


def test_relative_position_mlps_need_nothing_and_follow_timm():
    reference, ours, _ = relpos_tests.loaded_pair()
    reference.visual.set_input_size(48)
    resized, resize = resized_model(ours, image_size=48)
    assert resize.changed == {}
    with torch.no_grad(), reference_mode():
        assert_relative_close(resized.encode_image(_images(48)), reference.encode_image(_images(48)))


def test_the_resnet_attention_pool_grid_keeps_its_mean_token_row():
    model = create_model("RN50", **{"vision.width": 16, "vision.layers": [1, 1, 1, 1], "vision.heads": 2,
                                    "text.width": 32, "text.heads": 2, "text.layers": 1, "embed_dim": 16,
                                    "vision.image_size": 64}).eval()
    resized, resize = resized_model(model, image_size=96)
    assert list(resize.changed) == ["vision_tower.attention_pool.position_embedding"]
    table = model.vision_tower.attention_pool.position_embedding.detach()
    state = {"visual.positional_embedding": table.clone()}
    open_clip().model.resize_pos_embed(state, types.SimpleNamespace(visual=types.SimpleNamespace(grid_size=(3, 3))))
    torch.testing.assert_close(resized.vision_tower.attention_pool.position_embedding,
                               state["visual.positional_embedding"], rtol=0, atol=1e-6)
    assert resized.encode_image(_images(96)).shape == (2, 16)


def test_swin_keeps_its_tables_at_larger_sizes_and_refuses_narrower_windows():
    config = get_model_config(swin_tests.NAME, **swin_tests.TINY)
    assert InputResize(config, resized_config(config, image_size=64)).changed == {}
    with pytest.raises(ValueError, match="vision.image_size 16: a stage's grid becomes smaller than the 4x4 attention "
                                         "window.*use an image size of at least 32"):
        InputResize(config, resized_config(config, image_size=16))


def _naflex_config() -> ModelConfig:
    values = get_model_config("tiny-siglip").to_dict()
    values["vision"] = {"kind": "naflex_vit", "image_size": 32, "width": 32, "layers": 1, "heads": 2, "patch_size": 8,
                        "position_grid": 4, "max_num_patches": 16, "projection": "linear"}
    values["preprocess"]["image_size"] = 32
    return ModelConfig.from_dict(values)


@pytest.mark.parametrize("config", [get_model_config("tiny"), _naflex_config()], ids=["conv", "naflex_vit"])
def test_naflex_and_conv_towers_change_no_tensor(config):
    resize = InputResize(config, resized_config(config, image_size=2 * config.vision.image_size))
    assert resize.changed == {}
    resized = build_model(resize.new)
    resized.load_state_dict(resize.resize_state_dict(build_model(config).state_dict()))
    assert resized.encode_image(_images(2 * config.vision.image_size)).shape[0] == 2


def test_an_image_side_off_the_patch_grid_is_refused_for_every_patch_family():
    config = get_model_config(timm_vit_tests.NAME)  # timm itself would floor 250 / 16
    with pytest.raises(ValueError, match=r"vision.image_size \(250\) must be divisible by vision.patch_size \(16\)"):
        resized_config(config, image_size=250)


def test_an_entry_no_rule_resizes_is_refused_naming_it(monkeypatch):
    config = get_model_config("tiny-vit")
    family = dataclasses.replace(timm_vit_family.FAMILY, kind="vit", resize_positions=None)
    monkeypatch.setattr("cliplab.models.resized_model.family_of", lambda tower: family)
    with pytest.raises(ValueError, match=r"the vit vision tower's vision_tower.position_embedding changes shape "
                                         r"\[50, 128\] -> \[145, 128\].*no rule of its family resizes it"):
        InputResize(config, resized_config(config, image_size=48))


def test_longclip_refuses_a_shorter_table_before_reading_weights():
    config = get_model_config("tiny-vit")
    with pytest.raises(ValueError, match="Long-CLIP stretching keeps the first 20"):
        InputResize(config, resized_config(config, context_length=24), CONTEXT_EXTENSIONS["longclip"])


def test_the_one_tensor_reader_gives_the_whole_state_dicts_tensors():
    model = create_model("tiny-vit")
    resize = InputResize(model.config, resized_config(model.config, image_size=48, context_length=64),
                         CONTEXT_EXTENSIONS["longclip"])
    state = model.state_dict()
    whole = resize.resize_state_dict(state)
    reads = []
    take = resize.resize_reader(lambda name: reads.append(name) or state[name])
    for name in reversed(list(whole)):
        assert torch.equal(take(name), whole[name]), name
    assert len(reads) == len(state)  # each tensor read once


def test_vitamin_positions_resized_as_timms_set_input_size():
    reference = vitamin_tests.small_vitamin(32).reference()
    ours = loaded_from(reference, vitamin_tests.small_vitamin(32).config())
    reference.visual.set_input_size(64)
    resized, resize = resized_model(ours, image_size=64)
    assert list(resize.changed) == ["vision_tower.position_embedding"]
    torch.testing.assert_close(resized.vision_tower.position_embedding, reference.visual.trunk.pos_embed[0],
                               rtol=0, atol=1e-6)
    with torch.no_grad(), reference_mode():
        assert_relative_close(resized.encode_image(_images(64)), reference.encode_image(_images(64)))


def test_fastvit_needs_nothing_at_another_size():
    config = get_model_config(fastvit_tests.NAME, **fastvit_tests.TINY)
    resize = InputResize(config, resized_config(config, image_size=2 * config.vision.image_size))
    assert resize.changed == {}

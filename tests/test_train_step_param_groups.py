"""AdamW's parameter groups: open_clip's weight-decay exclusions, layer-wise lr decay in closed form,
per-tower lr and weight decay, --wd-exclude, and the layers every tower family's lock groups give."""

import re

import pytest
import torch

from cliplab.models import ModelConfig, build_model, create_model
from cliplab.models.families import TOWER_FAMILIES
from cliplab.models.towers.locking import group_parameters
from cliplab.train.config import OptimConfig
from cliplab.train.step.optim import build_optimizer
from cliplab.train.step.param_groups import describe_parameter_groups, parameter_groups
from cliplab.train.step.schedule import set_lr

VIT = {"embed_dim": 16, "vision.width": 16, "vision.heads": 2, "text.width": 16, "text.heads": 2,
       "text.context_length": 8}  # tiny-vit: 4 image blocks, 2 text blocks


def _by_name(groups):
    return {name: group for group in groups for name in group["param_names"]}


def test_no_decay_on_biases_norms_embeddings_and_scale():
    model = create_model("tiny-siglip")
    no_decay, decay = parameter_groups(model, OptimConfig(wd=0.2))
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.2
    names = set(no_decay["param_names"])
    assert {"logit_scale", "logit_bias"} <= names
    assert any("position" in name for name in names)
    parameters = dict(model.named_parameters())
    for name in names:
        assert parameters[name].ndim < 2 or "embedding" in name, name
    for name in decay["param_names"]:
        assert parameters[name].ndim >= 2 and "norm" not in name and "bias" not in name, name
    assert len(names) + len(decay["param_names"]) == len(parameters)


def test_without_options_the_two_groups_list_parameters_in_model_order():
    model = create_model("tiny-vit", **VIT)
    groups = parameter_groups(model, OptimConfig())
    assert [(group["lr_scale"], group["weight_decay"]) for group in groups] == [(1.0, 0.0), (1.0, 0.1)]
    order = [name for name, _ in model.named_parameters()]
    for group in groups:
        assert group["param_names"] == [name for name in order if name in group["param_names"]]
    # even with no decay at all the two groups stay (checkpoints of such runs resume)
    assert [group["weight_decay"] for group in parameter_groups(model, OptimConfig(wd=0.0))] == [0.0, 0.0]


def test_layer_decay_follows_the_closed_form():
    # D = 0.5: every power is exact. Image: 4 blocks, groups [embeddings], blocks 0-2, [block 3, final
    # norm], [projection]; text: 2 blocks likewise.
    model = create_model("tiny-vit", **VIT)
    groups = _by_name(parameter_groups(model, OptimConfig(layer_decay=0.5)))
    blocks = {"vision_tower": 4, "text_tower": 2}
    for name, group in groups.items():
        scale = group["lr_scale"]
        match = re.match(r"(vision_tower|text_tower)\.transformer\.blocks\.(\d+)\.", name)
        if match:
            layers, block = blocks[match[1]], int(match[2])
            assert scale == 0.5 ** (layers - block), name  # block i of L at D^(L - i)
        elif name in ("image_projection.weight", "text_projection.weight", "logit_scale"):
            assert scale == 1.0, name  # heads and the logit scale at D^0
        elif name.startswith("vision_tower.norm_post") or name.startswith("text_tower.norm_final"):
            assert scale == 0.5, name  # the final norm sits with the last block
        else:
            tower = name.split(".")[0]
            assert scale == 0.5 ** (blocks[tower] + 1), name  # embeddings at D^(L + 1)


def test_per_tower_options_override_the_run_wide_ones():
    model = create_model("tiny-vit", **VIT)
    config = OptimConfig(lr=2e-3, wd=0.1, lr_image=1e-3, wd_text=0.25, layer_decay=0.5, layer_decay_text=1.0,
                         wd_exclude=(r"mlp\.fc\.weight$",))
    groups = _by_name(parameter_groups(model, config))
    assert groups["vision_tower.transformer.blocks.3.attn.qkv.weight"]["lr_scale"] == 0.5 * 0.5
    assert groups["vision_tower.transformer.blocks.3.attn.qkv.weight"]["weight_decay"] == 0.1
    assert groups["image_projection.weight"]["lr_scale"] == 0.5
    assert groups["text_tower.transformer.blocks.0.attn.qkv.weight"]["lr_scale"] == 1.0  # no decay in the text tower
    assert groups["text_tower.transformer.blocks.0.attn.qkv.weight"]["weight_decay"] == 0.25
    assert groups["text_projection.weight"]["weight_decay"] == 0.25
    for name, group in groups.items():
        if name.endswith("mlp.fc.weight"):
            assert group["weight_decay"] == 0.0, name
    assert groups["logit_scale"]["lr_scale"] == 1.0 and groups["logit_scale"]["weight_decay"] == 0.0


def test_each_group_runs_at_the_schedules_lr_times_its_scale_and_resumes_with_it():
    model = create_model("tiny-vit", **VIT)
    optimizer = build_optimizer(model, OptimConfig(layer_decay=0.5, lr_text=1e-3))
    set_lr(optimizer, 4e-3)
    assert all(group["lr"] == 4e-3 * group["lr_scale"] for group in optimizer.param_groups)
    model(torch.rand(2, 3, 28, 28), torch.randint(1, 50, (2, 8)))[0].sum().backward()
    optimizer.step()
    again = build_optimizer(model, OptimConfig())  # a different grouping cannot take this state...
    with pytest.raises(ValueError):
        again.load_state_dict(optimizer.state_dict())
    same = build_optimizer(model, OptimConfig(layer_decay=0.5, lr_text=1e-3))  # ...the same one takes it whole
    same.load_state_dict(optimizer.state_dict())
    assert [group["lr_scale"] for group in same.param_groups] == [group["lr_scale"] for group in optimizer.param_groups]


def test_describe_lists_every_group():
    model = create_model("tiny-vit", **VIT)
    groups = [group for group in parameter_groups(model, OptimConfig(layer_decay=0.5)) if group["params"]]
    lines = describe_parameter_groups(groups, 1e-3)
    assert len(lines) == len(groups)
    assert lines[0] == "group 0: lr x0.03125 (3.13e-05), weight decay 0, 4 tensors (848 values): image 0/6"


# A model of each tower family (Hugging Face text towers need files: tests/test_train_setup_lora.py).
FAMILY_MODELS = {"vit": "tiny-vit", "conv": "tiny", "resnet": "RN50", "timm_vit": "vit_medium_patch16_gap_256",
                 "timm_vit_relpos": "vit_relpos_medium_patch16_cls_224", "timm_eva": "EVA02-B-16",
                 "timm_fastvit": "MobileCLIP2-S0", "timm_vitamin": "ViTamin-S", "timm_convnext": "convnext_tiny",
                 "timm_swin": "swin_base_patch4_window7_224", "transformer": "tiny",
                 "naflex_vit": {"vision": {"kind": "naflex_vit", "image_size": 32, "width": 32, "layers": 2, "heads": 2,
                                           "patch_size": 16, "position_grid": 2, "max_num_patches": 4}, "embed_dim": 32}}


def family_model(kind: str) -> torch.nn.Module:
    """A model on meta whose image or text tower is of family `kind`."""
    name = FAMILY_MODELS[kind]
    if isinstance(name, str):
        return create_model(name, device="meta")
    values = create_model("tiny", device="meta").config.to_dict()
    values.update(name)
    values["preprocess"]["image_size"] = values["vision"]["image_size"]
    with torch.device("meta"):
        return build_model(ModelConfig.from_dict(values))


def test_every_family_has_a_model_here():
    assert set(FAMILY_MODELS) == {family.kind for family in TOWER_FAMILIES} - {"hf_text"}


@pytest.mark.parametrize("kind", sorted(FAMILY_MODELS))
def test_every_familys_lock_groups_are_its_towers_layers(kind):
    model = family_model(kind)
    side = next(side for side in ("vision", "text") if getattr(model.config, side).kind == kind)
    tower = getattr(model, f"{side}_tower")
    family = next(family for family in TOWER_FAMILIES if family.kind == kind)
    groups = family.lock_groups(tower)
    covered = [id(parameter) for group in groups for parameter in group_parameters(group)]
    assert sorted(covered) == sorted(id(parameter) for parameter in tower.parameters())  # each once
    depth = {id(parameter): len(groups) - 1 - index for index, group in enumerate(groups)
             for parameter in group_parameters(group)}
    for group in parameter_groups(model, OptimConfig(layer_decay=0.5)):
        for parameter in group["params"]:
            if id(parameter) in depth:
                assert group["lr_scale"] == 0.5 ** depth[id(parameter)]

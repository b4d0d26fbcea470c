"""LoRA through peft on cliplab's models: the documented target names on ViT-B-32 (its fused `qkv` is
an ordinary nn.Linear peft adapts), on a timm ViT, a conv tower and each Hugging Face text model type;
merged models equal adapted ones within 1e-5; bundles keep the adapters and load merged."""

import json

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

import cliplab
from cliplab.data.tokenizer import Tokenizer
from cliplab.errors import UserError
from cliplab.models import build_model, create_model
from cliplab.models.families.spec import TRANSFORMER_LORA_TARGETS
from cliplab.models.lora import (LORA_FILE, LoraSpec, add_lora, base_name, is_adapter_name, lora_spec_of, merge_lora,
                                 read_lora_spec, target_modules)
from cliplab.models.open_clip_config import config_from_open_clip
from hf_text_fixtures import write_hf_config

TINY = {"vision.width": 16, "text.width": 32, "text.heads": 2, "text.layers": 1, "text.context_length": 12,
        "text.vocab_size": 300, "embed_dim": 16}


def _randomise_adapters(model: nn.Module, seed: int = 0) -> None:
    """B starts at zero (the adapted model equals the base); give it values so merging shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".lora_B." in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)


def _assert_merged_equals_adapted(model: nn.Module, spec: LoraSpec, images: torch.Tensor, tokens: torch.Tensor):
    with torch.no_grad():
        base = model.eval()(images, tokens)
    adapted = add_lora(model, spec)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model(images, tokens), base))  # B = 0: nothing changed yet
        _randomise_adapters(model)
        outputs = model(images, tokens)
        assert not all(torch.allclose(a, b) for a, b in zip(outputs, base))
        merged = merge_lora(adapted)
        assert not any(is_adapter_name(name) or ".base_layer." in name for name in merged.state_dict())
        for ours, theirs in zip(merged(images, tokens), outputs):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)  # W + (alpha / r) B A, fp32 rounding


def test_vit_b_32_takes_the_documented_target_names_through_peft():
    torch.manual_seed(0)
    model = create_model("ViT-B-32")
    names = target_modules(model, ("vision", "text"))
    expected = [f"{tower}.transformer.blocks.{block}.{layer}" for tower in ("vision_tower", "text_tower")
                for block in range(12) for layer in ("attn.qkv", "attn.out", "mlp.fc", "mlp.proj")]
    assert sorted(names) == sorted(expected)
    assert all(isinstance(model.get_submodule(name), nn.Linear) for name in names)  # the fused qkv is a Linear
    # peft's own entry point with the documented suffixes adapts exactly these layers
    adapted = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=list(TRANSFORMER_LORA_TARGETS)))
    found = sorted(name for name, module in model.named_modules() if hasattr(module, "lora_A"))
    assert found == sorted(expected)
    qkv = model.vision_tower.transformer.blocks[0].attn.qkv
    assert qkv.lora_A["default"].weight.shape == (8, 768) and qkv.lora_B["default"].weight.shape == (3 * 768, 8)
    trainable = {name for name, parameter in adapted.named_parameters() if parameter.requires_grad}
    assert trainable and all(".lora_A." in name or ".lora_B." in name for name in trainable)
    # per block, r (W + 3W) + r (W + W) + r (W + 4W) + r (4W + W) = 16 r W: 12 blocks of W 768 and 12 of W 512
    assert sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad) == 12 * 16 * 8 * (
        768 + 512)
    spec = lora_spec_of(model)
    assert spec == LoraSpec(rank=8, alpha=16, dropout=0.0, modules=names)  # in module order


def test_a_timm_vit_and_a_conv_tower_merge_to_their_adapted_outputs():
    images = torch.rand(2, 3, 32, 32)
    torch.manual_seed(0)
    timm_vit = create_model("vit_medium_patch16_gap_256", **{
        "vision.width": 32, "vision.layers": 2, "vision.heads": 2, "vision.image_size": 32, "text.width": 32,
        "text.heads": 2, "text.layers": 1, "text.context_length": 12, "embed_dim": 16})
    tokens = torch.randint(1, 100, (2, 12))
    vision = target_modules(timm_vit, ("vision",))
    assert len(vision) == 8 and all(name.startswith("vision_tower.transformer.blocks.") for name in vision)
    _assert_merged_equals_adapted(timm_vit, LoraSpec(rank=4, alpha=8, dropout=0.0, modules=vision), images, tokens)

    tiny = create_model("tiny", **TINY)
    convs = target_modules(tiny, ("vision",))
    assert convs == ("vision_tower.stem.0", "vision_tower.stages.0.0.0", "vision_tower.stages.0.1.0",
                     "vision_tower.stages.1.0.0", "vision_tower.stages.1.1.0")
    assert all(isinstance(tiny.get_submodule(name), nn.Conv2d) for name in convs)
    both = target_modules(tiny, ("vision", "text"))
    _assert_merged_equals_adapted(tiny, LoraSpec(rank=2, alpha=4, dropout=0.0, modules=both),
                                  torch.rand(2, 3, 28, 28), tokens)


@pytest.mark.parametrize("model_type, layers", [
    ("roberta", ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                 "intermediate.dense", "output.dense")),
    ("mt5", ("SelfAttention.q", "SelfAttention.k", "SelfAttention.v", "SelfAttention.o", "DenseReluDense.wi_0",
             "DenseReluDense.wi_1", "DenseReluDense.wo")),
    ("m2m_100", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "fc1", "fc2")),
])
def test_hugging_face_text_towers_take_transformers_names(tmp_path, model_type, layers):
    directory = write_hf_config(tmp_path / model_type, model_type)
    config = config_from_open_clip({"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32,
                                                                    "patch_size": 16, "head_width": 16},
                                    "text_cfg": {"hf_model_name": str(directory), "hf_model_pretrained": False}})
    torch.manual_seed(0)
    model = build_model(config)
    names = target_modules(model, ("text",))
    assert len(names) == 2 * len(layers)  # each of the 2 encoder layers, each of its layers once
    assert all(sum(name.endswith("." + layer) for name in names) >= 2 for layer in layers), names
    tokens = torch.randint(3, 300, (2, 12))
    _assert_merged_equals_adapted(model, LoraSpec(rank=4, alpha=4, dropout=0.0, modules=names),
                                  torch.rand(2, 3, 32, 32), tokens)


def test_targets_name_what_they_miss():
    model = create_model("tiny", **TINY)
    with pytest.raises(ValueError, match=r"LoRA targets \['attn\.qkv'\] match no nn.Linear or nn.Conv2d in the "
                                         r"vision_tower"):
        target_modules(model, ("vision",), ("attn.qkv",))
    assert target_modules(model, ("text",), ("mlp.fc",)) == ("text_tower.transformer.blocks.0.mlp.fc",)
    assert base_name("a.qkv.base_layer.weight") == "a.qkv.weight" and is_adapter_name("a.qkv.lora_B.default.weight")


def test_a_saved_adapted_model_loads_merged(tmp_path):
    torch.manual_seed(0)
    model = create_model("tiny", **TINY)
    tokenizer = Tokenizer.train(["a photo of a bag", "a dress"] * 5, vocab_size=300, context_length=12)
    spec = LoraSpec(rank=2, alpha=3, dropout=0.1, modules=target_modules(model, ("vision", "text")))
    add_lora(model, spec)
    _randomise_adapters(model)
    cliplab.save(model, tokenizer, tmp_path / "bundle")
    assert read_lora_spec(tmp_path / "bundle") == spec
    assert json.loads((tmp_path / "bundle" / LORA_FILE).read_text())["modules"] == list(spec.modules)
    loaded, _, _ = cliplab.load(tmp_path / "bundle")
    assert lora_spec_of(loaded) is None
    images, tokens = torch.rand(2, 3, 28, 28), torch.randint(1, 100, (2, 12))
    model.eval()
    with torch.no_grad():
        for ours, theirs in zip(loaded(images, tokens), model(images, tokens)):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    # a plain model saved into the same directory leaves no adapter description behind
    cliplab.save(create_model("tiny", **TINY), tokenizer, tmp_path / "bundle")
    assert read_lora_spec(tmp_path / "bundle") is None and cliplab.load(tmp_path / "bundle")[0] is not None
    (tmp_path / "bundle" / LORA_FILE).write_text("{}")
    with pytest.raises(UserError, match="not the LoRA description cliplab writes"):
        cliplab.load(tmp_path / "bundle")


def test_a_vit_pooling_its_class_row_keeps_the_last_blocks_adapters():
    # The pooled forward computes the last block's class row alone: its qkv goes through the LoRA layer too.
    torch.manual_seed(0)
    model = create_model("ViT-B-32", **{"vision.width": 32, "vision.layers": 2, "vision.heads": 2,
                                        "vision.patch_size": 16, "vision.image_size": 32, **TINY})
    assert model.vision_tower.pools_class_row_only
    names = target_modules(model, ("vision",))
    _assert_merged_equals_adapted(model, LoraSpec(rank=4, alpha=4, dropout=0.0, modules=names),
                                  torch.rand(2, 3, 32, 32), torch.randint(3, 300, (2, 12)))

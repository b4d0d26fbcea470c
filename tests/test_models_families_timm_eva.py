"""Tower family "timm_eva" against open_clip 3.3.0 + timm 1.0.31: small variants of every Eva layout
open_clip's configs use (EVA01's fused q/v-biased attention, EVA02's rotary positions, SwiGLU and
sub-LN, EVA02-E's post-norm blocks, PE-Core's rotary positions and attention pooling, with and
without a class token; plus SwiGLU packed and layer scale) with random weights give equal features
through the family's key rules both ways (fp32, eval, 1e-5 relative); locking freezes what
open_clip's TimmModel.lock freezes; the hub configs' eval preprocessing is open_clip's; tiny
EVA02-B-16 and PE-Core-B-16 train (every parameter gets a gradient, --lock-image freezes the image
side); the real-size hub directory and export round trips (slow)."""

import dataclasses
import json
import math
from dataclasses import asdict

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import cliplab
from cliplab.data.preprocess_config import PreprocessConfig
from cliplab.data.tokenizer_openai import openai_bpe_tokenizer
from cliplab.distributed.launch import run_on_workers
from cliplab.distributed.shard_init import ShardedInit, shard_rows
from cliplab.errors import UnsupportedArchitectureError
from cliplab.losses import ClipLoss
from cliplab.model_io import load_model
from cliplab.models import build_model, create_model, get_model_config
from cliplab.models.families.timm_eva import TimmEvaConfig
from cliplab.models.open_clip_config import builtin_open_clip_config, config_from_open_clip, config_to_open_clip
from cliplab.pretrained.key_maps import from_cliplab, to_cliplab
from cliplab.pretrained.open_clip_keys import open_clip_rules
from cliplab.train import TrainHooks, train
from cliplab.train.config import ModelSetupConfig

from data_fixtures import make_manifest
from reference_libraries import (assert_relative_close, open_clip, open_clip_model, randomize_, reference_mode,
                                 small_open_clip_cfg)
from timm_fixtures import assert_refused_by_name
from train_helpers import assert_fsdp_follows_ddp, assert_sharded_build_keeps_the_full_builds_values, csv_config

torch.set_num_threads(2)
SMALL_TIMM = {"depth": 2, "embed_dim": 64, "num_heads": 4, "img_size": 32, "patch_size": 8}
SMALL_OURS = {"width": 64, "layers": 2, "heads": 4, "image_size": 32, "patch_size": 8}
TEXTS = ["a photo of a cat!", "two dogs", ""]
# (open_clip name, timm arguments changed beyond SMALL_TIMM, the same change in cliplab's config)
VARIANTS = {
    "EVA01": ("EVA01-g-14", {}, {}),
    "EVA02": ("EVA02-B-16", {}, {}),
    "EVA02-packed-swiglu": ("EVA02-B-16", {"scale_mlp": False}, {"mlp_norm": False}),
    "EVA02-E-post-norm": ("EVA02-E-14", {}, {}),
    "PE-Core": ("PE-Core-B-16", {}, {}),
    "PE-Core-layer-scale": ("PE-Core-B-16", {"init_values": 0.5}, {"layer_scale": 0.5}),
    "PE-Core-no-class-token": ("PE-Core-bigG-14-448", {}, {}),
}


def small_pair(name, timm_change=None, our_change=None, seed=3):
    """(open_clip's small model of `name` with random weights, cliplab's config of the same sizes)."""
    model_cfg = small_open_clip_cfg(name, embed_dim=32, text_cfg={"width": 32, "heads": 2, "layers": 2})
    reference = randomize_(open_clip_model(model_cfg, timm_kwargs={**SMALL_TIMM, **(timm_change or {})}), seed=seed)
    full = config_from_open_clip(model_cfg)
    vision = dataclasses.replace(full.vision, **SMALL_OURS, **(our_change or {}))
    return reference, dataclasses.replace(full, vision=vision, preprocess=PreprocessConfig(image_size=32))


def loaded_pair(variant):
    """open_clip's small model and cliplab's, holding the same weights (eval mode)."""
    reference, config = small_pair(*VARIANTS[variant])
    ours = build_model(config).eval()
    ours.load_state_dict(to_cliplab(reference.state_dict(), ours.state_dict(), open_clip_rules(config, "text."),
                                    "open_clip"))
    return reference, ours


def test_the_converter_reads_timms_facts():
    eva02 = config_from_open_clip(builtin_open_clip_config("EVA02-B-16")).vision
    assert eva02 == TimmEvaConfig(
        timm_model_name="eva02_base_patch16_clip_224", image_size=224, patch_size=16, width=768, layers=12, heads=12,
        mlp_ratio=8 / 3, mlp="swiglu", mlp_norm=True, qkv_bias="qv", qkv_fused=False, attention_norm=True,
        rope=True, rope_reference_grid=[16, 16], pool="token", norm_eps=1e-6, projection="linear_bias")
    pe_core = config_from_open_clip(builtin_open_clip_config("PE-Core-B-16")).vision
    assert pe_core == TimmEvaConfig(
        timm_model_name="vit_pe_core_base_patch16_224", image_size=224, patch_size=16, width=768, layers=12,
        heads=12, qkv_bias="qkv", norm_pre=True, rope=True, rope_grid_offset=1.0, rope_grid_indexing="xy",
        rope_reference_grid=[14, 14], pool="map", attention_pool_heads=8, attention_pool_mlp_ratio=4.0,
        norm_eps=1e-5, projection="linear_bias")
    bigg = config_from_open_clip(builtin_open_clip_config("PE-Core-bigG-14-448")).vision
    assert (bigg.class_token, bigg.rope_grid_offset, bigg.mlp_width) == (False, 0.0, 8960)
    eva01 = config_from_open_clip(builtin_open_clip_config("EVA01-g-14")).vision
    assert (eva01.mlp, eva01.qkv_bias, eva01.qkv_fused, eva01.rope, eva01.mlp_width) == (
        "gelu", "qv", True, False, 6144)
    eva02_e = config_from_open_clip(builtin_open_clip_config("EVA02-E-14")).vision
    assert (eva02_e.post_norm, eva02_e.layer_scale, eva02_e.rope, eva02_e.mlp_width) == (True, None, False, 15360)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_small_variant_equals_open_clip_through_the_key_rules_both_ways(variant):
    reference, ours = loaded_pair(variant)
    theirs_state = reference.state_dict()
    back = from_cliplab(ours.state_dict(), open_clip_rules(ours.config, "text."))
    assert sorted(back) == sorted(theirs_state)
    assert all(torch.equal(back[name], theirs_state[name]) for name in back)
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    tokens = openai_bpe_tokenizer(ours.config.text.context_length)(TEXTS)
    prefix = int(ours.config.vision.class_token)
    with torch.no_grad(), reference_mode():
        assert_relative_close(ours.encode_image(images), reference.encode_image(images))
        assert_relative_close(ours.encode_text(tokens), reference.encode_text(tokens))
        assert_relative_close(ours.vision_tower.forward_tokens(images),
                              reference.visual.trunk.forward_features(images)[:, prefix:])
    assert torch.equal(ours.logit_scale, reference.logit_scale)


def _trainable(model, prefixes):
    """{name: tensor of the parameter's requires_grad flag}, for parameters under `prefixes`."""
    return {name: torch.full_like(parameter, float(parameter.requires_grad))
            for name, parameter in model.named_parameters() if name.startswith(prefixes)}


@pytest.mark.parametrize("variant", ["EVA02", "PE-Core"])
def test_locking_freezes_what_open_clips_timm_lock_freezes(variant):
    """Group by group (stem, blocks with the final norm in the last, the pooler with timm's head),
    as timm's Eva.group_matcher counts them for open_clip's TimmModel.lock."""
    reference, ours = loaded_pair(variant)
    groups = len(type(ours.vision_tower).parameter_groups(ours.vision_tower))
    assert groups == 1 + ours.config.vision.layers + 1
    rules = open_clip_rules(ours.config, "text.")
    for unlocked in range(groups + 1):
        for model in (ours, reference):
            model.requires_grad_(True)
        ours.lock_image_tower(unlocked_groups=unlocked)
        reference.lock_image_tower(unlocked_groups=unlocked)
        mapped = from_cliplab(_trainable(ours, ("vision_tower.", "image_projection.")), rules)
        expected = _trainable(reference, ("visual.",))
        assert sorted(mapped) == sorted(expected)
        assert all(torch.equal(mapped[name], expected[name]) for name in expected), unlocked


def test_fsdp_units_are_the_blocks():
    model = create_model("PE-Core-B-16", device="meta")
    assert model.fsdp_units() == [*model.vision_tower.transformer.blocks, *model.text_tower.transformer.blocks]


def test_export_names_the_timm_model_and_refuses_other_sizes():
    config = config_from_open_clip(builtin_open_clip_config("PE-Core-B-16"))
    exported = config_to_open_clip(config)
    assert exported["vision_cfg"] == {"timm_model_name": "vit_pe_core_base_patch16_224", "timm_model_pretrained": False,
                                      "timm_pool": "map", "timm_proj": None, "image_size": 224}
    assert config_from_open_clip(exported) == config
    with pytest.raises(UnsupportedArchitectureError, match=r"open_clip cannot represent this model: timm's "
                                                           r"vit_pe_core_base_patch16_224 is not this tower: "
                                                           r"vision.image_size=32 \(timm: 224\)"):
        config_to_open_clip(small_pair("PE-Core-B-16")[1])


REFUSED_EVA02 = r"vision_cfg.timm_model_name='eva02_base_patch16_clip_224' \(timm's Eva\) needs "


@pytest.mark.parametrize("change, message", [
    ({"timm_pool": "avgmax"}, REFUSED_EVA02 + r"global_pool='avgmax', which the timm tower family 'timm_eva' does "
                                              r"not build yet"),
    ({"timm_proj": "linear"}, REFUSED_EVA02 + r"timm_proj='linear'"),
    ({"patch_dropout": 0.5}, REFUSED_EVA02 + r"patch_dropout=0.5"),
    ({"image_size": 336}, r"vision_cfg.image_size=336 differs from timm's img_size 224"),
])
def test_options_the_family_does_not_build_are_refused_by_name(change, message):
    assert_refused_by_name("EVA02-B-16", change, message)


def _open_clip_eval_pixels(image, cfg):
    """What open_clip's eval transform (torchvision on PIL) computes for preprocess cfg `cfg`:
    squash to size x size, or shortest side to `size` (the long side truncated) and a centre
    crop (offsets rounded); RGB; (x / 255 - mean) / std."""
    size, resample = cfg["size"], {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[cfg["interpolation"]]
    width, height = image.size
    if cfg["resize_mode"] == "squash":
        target = (size, size)
    else:
        long_side = int(size * max(width, height) / min(width, height))
        target = (size, long_side) if width <= height else (long_side, size)
    if target != image.size:
        image = image.resize(target, resample)
    left, top = int(round((image.width - size) / 2.0)), int(round((image.height - size) / 2.0))
    image = image.crop((left, top, left + size, top + size)).convert("RGB")
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1) / 255.0
    mean, std = torch.tensor(cfg["mean"]).view(3, 1, 1), torch.tensor(cfg["std"]).view(3, 1, 1)
    return (pixels - mean) / std


@pytest.mark.parametrize("name, tag", [("EVA02-B-16", "merged2b_s8b_b131k"), ("PE-Core-B-16", "meta")])
def test_eval_preprocessing_of_the_hub_config_is_open_clips(name, tag, tmp_path):
    """The hub config open_clip's pretrained table gives (EVA: OpenAI statistics, shortest side,
    bicubic; PE: 0.5 statistics, squash, bilinear), read by cliplab.load, resolves to open_clip's
    preprocess config and makes its pixels from PIL images of several shapes."""
    library = open_clip()
    pretrained = library.get_pretrained_cfg(name, tag)
    preprocess_cfg = {key: pretrained[key] for key in ("mean", "std", "interpolation", "resize_mode")}
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": builtin_open_clip_config(name),
                                                                "preprocess_cfg": preprocess_cfg}))
    save_file({}, str(tmp_path / "open_clip_model.safetensors"))  # not read on the meta device
    loaded = load_model(tmp_path, device="meta")
    expected_cfg = library.factory.merge_preprocess_dict(asdict(library.transform.PreprocessCfg()), preprocess_cfg)
    expected_cfg["size"] = builtin_open_clip_config(name)["vision_cfg"]["image_size"]
    expected_cfg = {key: list(value) if isinstance(value, tuple) else value for key, value in expected_cfg.items()}
    assert loaded.model.config.preprocess.to_open_clip() == expected_cfg
    generator = np.random.default_rng(0)
    for width, height in [(300, 200), (180, 260), (224, 224), (97, 512)]:
        image = Image.fromarray(generator.integers(0, 256, (height, width, 3), dtype=np.uint8))
        assert torch.equal(loaded.preprocess(image), _open_clip_eval_pixels(image, expected_cfg))


@pytest.mark.parametrize("name", ["PE-Core-B-16", "PE-Core-bigG-14-448"])
def test_the_tokenizer_is_open_clips_with_pe_cores_context(name):
    texts = ["a photo of a cat!", "two dogs " * 40, ""]
    ours, theirs = cliplab.get_tokenizer(name)(texts), open_clip().get_tokenizer(name)(texts)
    assert ours.shape == (3, builtin_open_clip_config(name)["text_cfg"]["context_length"]) and torch.equal(ours, theirs)


# EVA02-B-16 / PE-Core-B-16 shrunk to train in seconds (no longer timm's model: timm_model_name None).
TINY = {"embed_dim": 16, "vision.timm_model_name": None, "vision.width": 32, "vision.layers": 2, "vision.heads": 2,
        "vision.image_size": 32, "vision.patch_size": 8, "preprocess.image_size": 32, "text.width": 32,
        "text.heads": 2, "text.layers": 1, "text.context_length": 20}


@pytest.mark.parametrize("name", ["EVA02-B-16", "PE-Core-B-16"])
def test_every_parameter_of_a_tiny_model_gets_a_gradient(name):
    torch.manual_seed(0)
    model = create_model(name, output_dict=True, **TINY).train()
    images = torch.randn(4, 3, 32, 32)
    tokens = openai_bpe_tokenizer(20)(["a cat", "a dog", "two birds", "a red car"])
    output = model(images, tokens)
    ClipLoss()(output["image_features"], output["text_features"], output["logit_scale"]).backward()
    missing = [name for name, parameter in model.named_parameters()
               if parameter.grad is None or not parameter.grad.isfinite().all() or not parameter.grad.any()]
    assert missing == []


@pytest.mark.parametrize("name", ["EVA02-B-16", "PE-Core-B-16"])
def test_a_tiny_model_trains_on_csv_data_with_the_image_tower_locked(name, tmp_path):
    """--lock-image (model.lock_image): the whole image side, its norms included (open_clip's
    meaning), keeps its weights over a step; the text side moves."""
    manifest = make_manifest(tmp_path / "data", 8)
    config = csv_config(tmp_path / "logs", manifest, batch_size=4, epochs=1)
    config.model = ModelSetupConfig(name=name, overrides=dict(TINY), lock_image=True)
    states, frozen, losses = [], set(), []

    def after_step(step, model):
        states.append({key: value.detach().clone() for key, value in model.state_dict().items()})
        frozen.update(key for key, parameter in model.named_parameters() if not parameter.requires_grad)

    def modify_loss(step, output):
        losses.append(output.total.item())
        return output

    train(config, hooks=TrainHooks(after_step=after_step, modify_loss=modify_loss))
    assert len(states) == 2 and all(math.isfinite(loss) for loss in losses)
    first, second = states
    image_side = {key for key in first if key.startswith(("vision_tower.", "image_projection."))}
    assert frozen == image_side
    assert all(torch.equal(first[key], second[key]) for key in frozen)
    text_side = [key for key in first if key.startswith(("text_tower.", "text_projection."))]
    assert not any(torch.equal(first[key], second[key]) for key in text_side if key.endswith("weight"))


def test_a_sharded_build_of_pe_core_keeps_the_initial_values_of_the_full_build():
    """PE-Core's rotary positions and attention pool (the registry sweep builds EVA02's layout)."""
    assert_sharded_build_keeps_the_full_builds_values(get_model_config("PE-Core-B-16", **TINY))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["EVA02-B-16", "PE-Core-B-16"])
def test_fsdp_shards_the_blocks_and_follows_ddp(name, tmp_path):
    """2 gloo ranks, 6 steps: FSDP2 (each Eva block a unit) within 1e-4 of DDP, as for every family."""
    assert_fsdp_follows_ddp(tmp_path / "logs", make_manifest(tmp_path / "data", 16), name, TINY)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["EVA02-B-16", "PE-Core-B-16"])
def test_a_real_size_hub_directory_loads_equal_and_exports_back_to_open_clip(name, tmp_path):
    """open_clip's model (its own config and timm's tower, random weights) written as a hub
    directory, read by cliplab.load: equal features; cliplab's export read by open_clip: equal."""
    from reference_libraries import write_open_clip_hub

    reference = write_open_clip_hub(tmp_path / "hub", builtin_open_clip_config(name), seed=0)
    loaded = cliplab.load_model(tmp_path / "hub")
    size = loaded.model.config.vision.image_size
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(5))
    tokens = loaded.tokenizer(TEXTS)
    with torch.no_grad(), reference_mode():
        image_features, text_features = reference.encode_image(images), reference.encode_text(tokens)
        assert_relative_close(loaded.model.encode_image(images), image_features)
        assert_relative_close(loaded.model.encode_text(tokens), text_features)
        assert torch.equal(loaded.model.logit_scale, reference.logit_scale)
        del reference
        directory = cliplab.export(loaded.model, loaded.tokenizer, tmp_path / "export", format="open_clip")
        del loaded
        again = open_clip().create_model(f"local-dir:{directory}",
                                         pretrained=f"{directory}/open_clip_model.safetensors").eval()
        assert_relative_close(again.encode_image(images), image_features)
        assert_relative_close(again.encode_text(tokens), text_features)

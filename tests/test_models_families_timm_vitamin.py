"""Tower family "timm_vitamin" against open_clip 3.3.0 + timm 1.0.31: a small variant of ViTamin-S
(timm's own model function with a smaller MbConv stem and transformer) with random weights gives
equal features through the family's key rules in both directions (fp32, eval, 1e-5 relative); the
converter reads timm's facts (the MbConv stem from the module timm records) for all 15 configs and
refuses what it does not build; locking follows open_clip's `TimmModel.lock`; the hub
preprocessing is open_clip's; a tiny ViTamin-S trains; a real-size ViTamin-S hub directory loads
and exports back (slow)."""

import dataclasses

import pytest
import torch

from cliplab.data.preprocess_config import PreprocessConfig
from cliplab.errors import UnsupportedArchitectureError
from cliplab.models import build_model
from cliplab.models.families.timm_vitamin import TimmVitaminConfig
from cliplab.models.open_clip_config import (builtin_open_clip_config, builtin_open_clip_names, config_from_open_clip,
                                             config_to_open_clip)
from cliplab.pretrained.key_maps import from_cliplab, to_cliplab
from cliplab.pretrained.open_clip_keys import open_clip_rules
from reference_libraries import (assert_relative_close, open_clip_model, randomize_, reference_mode,
                                 small_open_clip_cfg, timm)

torch.set_num_threads(2)
NAME = "ViTamin-S"
SIDE = 64
SMALL_TEXT = {"width": 32, "heads": 2, "layers": 2}
SMALL_VISION = {"width": 64, "layers": 2, "heads": 4, "image_size": SIDE, "stem_widths": [16, 32],
                "stem_depths": [1, 2]}
TINY = {"vision.width": 32, "vision.layers": 1, "vision.heads": 2, "vision.image_size": 32,
        "vision.stem_widths": [8, 16], "vision.stem_depths": [1, 1], "text.width": 32, "text.heads": 2,
        "text.layers": 1, "embed_dim": 16, "preprocess.image_size": 32}


def small_timm_kwargs() -> dict:
    """timm's vitamin_small_224 at the sizes of SMALL_VISION (its model function takes embed_cfg)."""
    vitamin = timm().models.vitamin
    stem = vitamin.VitCfg(embed_dim=(16, 32, 64), depths=(1, 2, 1), stem_width=16,
                          conv_cfg=vitamin.VitConvCfg(norm_layer="layernorm2d", norm_eps=1e-6))
    return {"depth": 2, "embed_dim": 64, "num_heads": 4, "img_size": SIDE, "embed_cfg": stem}


def small_config():
    model_cfg = builtin_open_clip_config(NAME)
    model_cfg["text_cfg"].update(SMALL_TEXT)
    full = config_from_open_clip(model_cfg)
    return dataclasses.replace(full, embed_dim=32, vision=dataclasses.replace(full.vision, **SMALL_VISION),
                               preprocess=PreprocessConfig(image_size=SIDE))


def loaded_pair():
    """(open_clip's small ViTamin-S with random weights, cliplab's with its weights through the key
    rules, the rules)."""
    model_cfg = small_open_clip_cfg(NAME, embed_dim=32, text_cfg=SMALL_TEXT)
    reference = randomize_(open_clip_model(model_cfg, timm_kwargs=small_timm_kwargs()), seed=3)
    config = small_config()
    ours = build_model(config).eval()
    rules = open_clip_rules(config, "text.")  # CustomTextCLIP keeps the text tower under text.
    ours.load_state_dict(to_cliplab(reference.state_dict(), ours.state_dict(), rules, "open_clip"))
    return reference, ours, rules


def test_a_small_variant_equals_open_clip_through_the_key_rules_both_ways():
    reference, ours, rules = loaded_pair()
    theirs_state = reference.state_dict()
    back = from_cliplab(ours.state_dict(), rules)
    assert sorted(back) == sorted(theirs_state)
    assert all(torch.equal(back[key], theirs_state[key]) for key in back)
    images = torch.randn(3, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(4))
    tokens = torch.randint(1, 49408, (3, 77), generator=torch.Generator().manual_seed(5))
    tokens[1, 30:] = 0
    with torch.no_grad(), reference_mode():
        assert_relative_close(ours.encode_image(images), reference.encode_image(images))
        assert_relative_close(ours.encode_text(tokens), reference.encode_text(tokens))
        assert_relative_close(ours.logit_scale, reference.logit_scale)
        assert_relative_close(ours.vision_tower.forward_tokens(images), reference.visual.trunk.forward_features(images))


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


@pytest.mark.parametrize("name", ["ViTamin-S-LTT", "ViTamin-L-384", "ViTamin-XL-384"])
def test_export_names_the_timm_model_and_reads_back(name):
    config = config_from_open_clip(builtin_open_clip_config(name))
    exported = config_to_open_clip(config)
    expected = builtin_open_clip_config(name)["vision_cfg"]
    assert {key: exported["vision_cfg"][key] for key in ("timm_model_name", "image_size", "timm_proj",
                                                         "timm_drop_path")} == {
        key: expected[key] for key in ("timm_model_name", "image_size", "timm_proj", "timm_drop_path")}
    assert config_from_open_clip(exported) == config


@pytest.mark.parametrize("change, message", [
    ({"timm_pool": "token"}, r"needs global_pool='token', which the timm tower family 'timm_vitamin' does not build"),
    ({"timm_proj": "mlp"}, r"needs timm_proj='mlp'"),
    ({"image_size": 256}, r"vision_cfg.image_size=256 differs from timm's img_size 224"),
])
def test_options_the_family_does_not_build_are_refused_by_name(change, message):
    model_cfg = builtin_open_clip_config(NAME)
    model_cfg["vision_cfg"].update(change)
    with pytest.raises(UnsupportedArchitectureError, match=message):
        config_from_open_clip(model_cfg)


def trainable(model, prefix):
    return {key for key, parameter in model.named_parameters() if key.startswith(prefix) and parameter.requires_grad}


@pytest.mark.parametrize("unlocked", [0, 1, 2])
def test_locking_follows_open_clips_timm_model_lock(unlocked):
    """timm's groups: the MbConv stem with the positions; each block; fc_norm; open_clip's
    `visual.head` stays trainable."""
    reference, ours, rules = loaded_pair()
    reference.lock_image_tower(unlocked_groups=unlocked)
    ours.lock_image_tower(unlocked_groups=unlocked, freeze_norms=True)
    ours_trainable = set(from_cliplab({key: torch.empty(0) for key in trainable(ours, "")}, rules))
    assert {key for key in ours_trainable if key.startswith("visual.")} == trainable(reference, "visual.")


def test_the_mbconv_stages_and_the_blocks_are_fsdp_units():
    model = build_model(small_config())
    tower = model.vision_tower
    assert model.fsdp_units()[:4] == [*tower.patch_embedding.stages, *tower.transformer.blocks]


@pytest.mark.parametrize("name", [NAME, "ViTamin-XL-384"])
def test_eval_preprocessing_of_the_hub_config_equals_open_clips(name, tmp_path):
    from open_clip_hub_checks import assert_hub_preprocessing_equals_open_clips

    assert_hub_preprocessing_equals_open_clips(name, "datacomp1b", tmp_path)


def test_a_tiny_vitamin_s_trains_on_csv_data_with_a_gradient_for_every_parameter(tmp_path, capsys):
    """`cliplab train --model ViTamin-S` with tiny overrides and gradient checkpointing on a CSV:
    two steps with finite losses; and one step of the same model gives every parameter a gradient."""
    import json

    from cliplab.cli import main
    from cliplab.losses import ClipLoss
    from cliplab.models import create_model
    from data_fixtures import make_manifest

    overrides = "{" + ", ".join(f"{key}: {value}" for key, value in TINY.items()) + "}"
    code = main(["train", "--logs", str(tmp_path / "logs"), "--name", "run", "--model", NAME, "--dataset-type", "csv",
                 "--train-data", str(make_manifest(tmp_path / "data", 8)), "--max-steps", "2", "--batch-size", "4",
                 "--workers", "0", "--threads", "1", "--no-progress-bar", "--no-tensorboard", "--grad-checkpointing",
                 "--log-every-n-steps", "1", "--set", f"model.overrides={overrides}"])
    assert code == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (tmp_path / "logs" / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [record["loss"] for record in records if record["kind"] == "train"]
    assert len(losses) == 2 and all(0 < loss < 10 for loss in losses)
    model = create_model(NAME, output_dict=True, **TINY).train()
    images, tokens = torch.randn(4, 3, 32, 32), torch.randint(1, 49408, (4, 77))
    ClipLoss()(**model(images, tokens)).backward()
    assert [name for name, parameter in model.named_parameters() if parameter.grad is None
            or not parameter.grad.abs().sum() > 0] == []


@pytest.mark.slow
def test_a_real_size_vitamin_s_hub_directory_loads_with_open_clips_outputs_and_exports_back(tmp_path):
    """ViTamin-S at real size (62M parameters): `cliplab.load` of open_clip's hub directory gives
    open_clip's features, and its export loads in open_clip with them."""
    from open_clip_hub_checks import assert_hub_directory_loads_and_exports_back

    assert_hub_directory_loads_and_exports_back(NAME, "datacomp1b", tmp_path, ["a photo of a cat", "two dogs"])

"""Tower family "timm_fastvit" against open_clip 3.3.0 + timm 1.0.31: small variants of MobileCLIP2-S0
(BatchNorm attention stage, squeeze-excited downsampling) and MobileCLIP2-S3 (five stages,
LayerNorm2d before attention, no stem scale branch) with random weights and random BatchNorm
statistics give equal features through the family's key rules in both directions (fp32, eval,
1e-5 relative); `reparameterize()` folds the train-time branches with unchanged features, into
timm's own inference layout and values (`timm.utils.reparameterize_model`); the converter reads
timm's facts and refuses what it does not build; locking follows open_clip's `TimmModel.lock`; a
tiny MobileCLIP2-S0 trains; real-size hub directories load in cliplab and export back (slow)."""

import dataclasses

import pytest
import torch

from cliplab.data.preprocess_config import PreprocessConfig
from cliplab.errors import UnsupportedArchitectureError
from cliplab.models import build_model
from cliplab.models.families.timm_fastvit import TimmFastVitConfig
from cliplab.models.open_clip_config import builtin_open_clip_config, config_from_open_clip, config_to_open_clip
from cliplab.pretrained.key_maps import from_cliplab, to_cliplab
from cliplab.pretrained.open_clip_keys import open_clip_rules
from reference_libraries import (assert_relative_close, open_clip_model, randomize_, reference_mode,
                                 small_open_clip_cfg, timm)

torch.set_num_threads(2)
NAME = "MobileCLIP2-S0"
SIDE = 64
SMALL_TEXT = {"width": 32, "heads": 2, "layers": 2}
# open_clip name -> (timm keyword overrides, the same sizes as cliplab's vision fields).
SMALL = {
    NAME: ({"layers": (1, 1, 1, 2), "embed_dims": (16, 32, 32, 64)}, {"layers": [1, 1, 1, 2],
                                                                     "widths": [16, 32, 32, 64]}),
    "MobileCLIP2-S3": ({"layers": (1,) * 5, "embed_dims": (16, 32, 32, 64, 64)}, {"layers": [1] * 5,
                                                                                "widths": [16, 32, 32, 64, 64]}),
}
TINY = {"vision.layers": [1, 1, 1, 1], "vision.widths": [8, 16, 16, 32], "vision.image_size": 64,
        "text.width": 32, "text.heads": 2, "text.layers": 1, "embed_dim": 32, "preprocess.image_size": 64}


def small_config(name: str):
    """cliplab's config of the small variant of `name` (see `SMALL`)."""
    model_cfg = builtin_open_clip_config(name)
    model_cfg["text_cfg"].update(SMALL_TEXT)
    full = config_from_open_clip(model_cfg)
    vision = dataclasses.replace(full.vision, image_size=SIDE, **SMALL[name][1])
    return dataclasses.replace(full, embed_dim=32, vision=vision, preprocess=PreprocessConfig(image_size=SIDE))


def loaded_pair(name: str):
    """(open_clip's small variant of `name` with random weights and BatchNorm statistics, cliplab's
    model with its weights through the key rules, the rules)."""
    model_cfg = small_open_clip_cfg(name, embed_dim=32, text_cfg=SMALL_TEXT)
    reference = randomize_(open_clip_model(model_cfg, timm_kwargs=SMALL[name][0]), seed=3)
    config = small_config(name)
    ours = build_model(config).eval()
    rules = open_clip_rules(config, "text.")  # CustomTextCLIP keeps the text tower under text.
    ours.load_state_dict(to_cliplab(reference.state_dict(), ours.state_dict(), rules, "open_clip"))
    return reference, ours, rules


def random_images(batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(4))


@pytest.mark.parametrize("name", list(SMALL))
def test_a_small_variant_equals_open_clip_through_the_key_rules_both_ways(name):
    reference, ours, rules = loaded_pair(name)
    theirs_state = reference.state_dict()
    back = from_cliplab(ours.state_dict(), rules)
    assert sorted(back) == sorted(theirs_state)
    assert all(torch.equal(back[key], theirs_state[key]) for key in back)
    images = random_images()
    tokens = torch.randint(1, 49408, (3, 77), generator=torch.Generator().manual_seed(5))
    tokens[1, 30:] = 0
    with torch.no_grad(), reference_mode():
        assert_relative_close(ours.encode_image(images), reference.encode_image(images))
        assert_relative_close(ours.encode_text(tokens), reference.encode_text(tokens))
        assert_relative_close(ours.logit_scale, reference.logit_scale)
        features = reference.visual.trunk.forward_features(images)  # [B, W, G, G]
        assert_relative_close(ours.vision_tower.forward_tokens(images), features.flatten(2).transpose(1, 2))


def test_reparameterize_folds_the_branches_as_timm_does_with_unchanged_features():
    """cliplab's folded model: the features of the unfolded one (1e-5 relative), timm's
    reparameterized trunk's tensor for tensor (names through the key rules: timm's
    `inference_mode` layout), a config that says so and builds the folded layout again."""
    reference, ours, _ = loaded_pair(NAME)
    images = random_images()
    with torch.no_grad():
        unfolded = ours.encode_image(images)
        assert ours.reparameterize() is ours
        assert_relative_close(ours.encode_image(images), unfolded)
        timm_folded = timm().utils.reparameterize_model(reference.visual.trunk)
        assert_relative_close(timm_folded(images), unfolded)
    assert ours.config.vision.reparameterized and ours.vision_tower.config is ours.config.vision
    ours_folded = from_cliplab(ours.state_dict(), open_clip_rules(ours.config, "text."))
    theirs_folded = {"visual.trunk." + key: tensor for key, tensor in timm_folded.state_dict().items()}
    assert sorted(key for key in ours_folded if key.startswith("visual.trunk.")) == sorted(theirs_folded)
    for key, tensor in theirs_folded.items():
        assert_relative_close(ours_folded[key], tensor) if tensor.is_floating_point() else None
    rebuilt = build_model(ours.config).eval()
    rebuilt.load_state_dict(ours.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.encode_image(images), ours.encode_image(images))


def test_the_converter_reads_timms_facts():
    def vision(name):
        return config_from_open_clip(builtin_open_clip_config(name)).vision

    assert vision(NAME) == TimmFastVitConfig(
        timm_model_name="fastvit_mci0", image_size=256, layers=[2, 6, 10, 2], widths=[64, 128, 256, 512],
        mlp_ratios=[3, 3, 3, 3], token_mixers=["repmixer"] * 3 + ["attention"], downsamples=[False, True, True, True],
        se_downsamples=[False, False, True, True], position_encodings=[False, False, False, True],
        downsample_activation=True, projection="linear_bias", timm_classifier=True)
    assert vision("MobileCLIP2-S3") == TimmFastVitConfig(
        timm_model_name="fastvit_mci3", image_size=256, layers=[2, 12, 24, 4, 2], widths=[96, 192, 384, 768, 1536],
        mlp_ratios=[4] * 5, token_mixers=["repmixer"] * 3 + ["attention"] * 2, downsamples=[False] + [True] * 4,
        se_downsamples=[False] * 5, position_encodings=[False] * 3 + [True] * 2, downsample_activation=True,
        stem_scale_branch=False, attention_norm="layer", projection="linear_bias", timm_classifier=True)


@pytest.mark.parametrize("name", ["MobileCLIP-S1", "MobileCLIP-S2", "MobileCLIP2-S0", "MobileCLIP2-S2",
                                  "MobileCLIP2-S3", "MobileCLIP2-S4"])
def test_export_names_the_timm_model_and_reads_back(name):
    config = config_from_open_clip(builtin_open_clip_config(name))
    exported = config_to_open_clip(config)
    assert exported["vision_cfg"] == {"timm_model_name": builtin_open_clip_config(name)["vision_cfg"]["timm_model_name"],
                                      "timm_model_pretrained": False, "timm_pool": "avg", "timm_proj": None,
                                      "timm_proj_bias": False, "image_size": 256}
    assert config_from_open_clip(exported) == config


def test_export_refuses_other_sizes_and_folded_branches():
    with pytest.raises(UnsupportedArchitectureError, match=r"open_clip cannot represent this model: timm's "
                                                           r"fastvit_mci0 is not this tower: vision.layers="):
        config_to_open_clip(small_config(NAME))
    config = config_from_open_clip(builtin_open_clip_config(NAME))
    folded = dataclasses.replace(config, vision=config.vision.folded())
    with pytest.raises(UnsupportedArchitectureError, match=r"vision.reparameterized=True: open_clip builds FastViT "
                                                           r"with its train-time branches"):
        config_to_open_clip(folded)


@pytest.mark.parametrize("change, message", [
    ({"timm_pool": "max"}, r"needs global_pool='max', which the timm tower family 'timm_fastvit' does not build"),
    ({"timm_proj": "mlp"}, r"needs timm_proj='mlp'"),
    ({"patch_dropout": 0.5}, r"needs patch_dropout=0.5"),
    ({"timm_proj": "linear", "timm_drop": 0.1}, r"needs timm_drop=0.1"),
])
def test_options_the_family_does_not_build_are_refused_by_name(change, message):
    model_cfg = builtin_open_clip_config(NAME)
    model_cfg["vision_cfg"].update(change)
    with pytest.raises(UnsupportedArchitectureError, match=message):
        config_from_open_clip(model_cfg)


def test_stochastic_depth_rises_over_the_blocks_as_timms():
    """open_clip's timm_drop_path: each block's drop probability is timm's (the MLP branch of a
    RepMixer block, both branches of an attention block); identity in eval mode."""
    model_cfg = small_open_clip_cfg(NAME, embed_dim=32, text_cfg=SMALL_TEXT)
    model_cfg["vision_cfg"]["timm_drop_path"] = 0.1
    theirs = open_clip_model(model_cfg, timm_kwargs=SMALL[NAME][0]).visual.trunk
    config = config_from_open_clip(model_cfg)
    assert config.vision.drop_path == 0.1 and config_from_open_clip(config_to_open_clip(config)) == config
    ours = build_model(dataclasses.replace(small_config(NAME), vision=dataclasses.replace(
        small_config(NAME).vision, drop_path=0.1))).vision_tower
    expected = [getattr(block.drop_path if hasattr(block, "drop_path") else block.drop_path1, "drop_prob", 0.0)
                for stage in theirs.stages for block in stage.blocks]
    assert [getattr(block.drop_path, "probability", 0.0) for stage in ours.stages for block in stage.blocks] == expected
    assert expected[-1] == pytest.approx(0.1) and expected[0] == 0.0


def test_open_clips_linear_head_and_no_projection_are_read():
    model_cfg = builtin_open_clip_config(NAME)
    model_cfg["vision_cfg"].update(timm_proj="linear", timm_proj_bias=True, timm_pool="")
    vision = config_from_open_clip(model_cfg).vision
    assert (vision.projection, vision.timm_classifier, vision.pool) == ("linear_bias", False, "avg")
    names = from_cliplab({"image_projection.weight": torch.empty(0)}, open_clip_rules(config_from_open_clip(model_cfg)))
    assert list(names) == ["visual.head.proj.weight"]


def trainable(model, prefix):
    return {key for key, parameter in model.named_parameters() if key.startswith(prefix) and parameter.requires_grad}


@pytest.mark.parametrize("unlocked", [0, 1, 2, 5])
def test_locking_follows_open_clips_timm_model_lock(unlocked):
    """timm's FastVit groups: the stem; a stage's downsampling and positional encoding with its first
    block; each further block; the final conv with timm's classifier (the projection)."""
    reference, ours, rules = loaded_pair(NAME)
    reference.lock_image_tower(unlocked_groups=unlocked)
    ours.lock_image_tower(unlocked_groups=unlocked, freeze_norms=True)
    ours_trainable = set(from_cliplab({key: torch.empty(0) for key in trainable(ours, "")}, rules))
    assert {key for key in ours_trainable if key.startswith("visual.")} == trainable(reference, "visual.")


def test_a_locked_tower_keeps_the_batch_norm_statistics_of_its_locked_groups():
    """open_clip's freeze_bn_stats: the BatchNorms of the locked groups normalise with their running
    statistics and never update them, in training too; the unlocked last group's follow the batches."""
    model = build_model(small_config(NAME))
    tower = model.vision_tower
    stem_mean, final_mean = (layer.running_mean.clone() for layer in (tower.stem[0].conv_kxk[0].bn,
                                                                      tower.final_conv.conv_kxk[0].bn))
    model.lock_image_tower(unlocked_groups=1, freeze_norms=True)
    model.train()
    with torch.no_grad():
        model.encode_image(random_images())
    assert not tower.stem[0].conv_kxk[0].bn.training and tower.final_conv.conv_kxk[0].bn.training
    assert torch.equal(tower.stem[0].conv_kxk[0].bn.running_mean, stem_mean)
    assert not torch.equal(tower.final_conv.conv_kxk[0].bn.running_mean, final_mean)


def test_the_stages_are_fsdp_units():
    model = build_model(small_config(NAME))
    assert model.fsdp_units()[:4] == list(model.vision_tower.stages)


def test_a_tiny_mobileclip2_s0_trains_with_a_gradient_for_every_parameter():
    from cliplab.losses import ClipLoss
    from cliplab.models import create_model

    model = create_model(NAME, output_dict=True, **TINY).train()
    images, tokens = random_images(4), torch.randint(1, 49408, (4, 77), generator=torch.Generator().manual_seed(6))
    ClipLoss()(**model(images, tokens)).backward()
    missing = [name for name, parameter in model.named_parameters() if parameter.grad is None
               or not parameter.grad.abs().sum() > 0]
    assert missing == []


# open_clip's pretrained configs of the MobileCLIP hub directories: bilinear shortest-side resize,
# mean 0 / std 1 (MobileCLIP, MobileCLIP2-S0/S2) or OpenAI's statistics (MobileCLIP2-S3/S4).
@pytest.mark.parametrize("name, tag", [("MobileCLIP-S1", "datacompdr"), (NAME, "dfndr2b"),
                                       ("MobileCLIP2-S3", "dfndr2b")])
def test_eval_preprocessing_of_the_hub_config_equals_open_clips(name, tag, tmp_path):
    from open_clip_hub_checks import assert_hub_preprocessing_equals_open_clips

    assert_hub_preprocessing_equals_open_clips(name, tag, tmp_path)


@pytest.mark.slow
def test_a_real_size_mobileclip2_s0_hub_directory_loads_with_open_clips_outputs_and_exports_back(tmp_path):
    """MobileCLIP2-S0 at real size (75M parameters, random BatchNorm statistics): `cliplab.load` of
    open_clip's hub directory gives open_clip's features, its export loads in open_clip with them,
    and they stay after `reparameterize()`."""
    from open_clip_hub_checks import assert_hub_directory_loads_and_exports_back

    ours, images, expected = assert_hub_directory_loads_and_exports_back(NAME, "dfndr2b", tmp_path,
                                                                         ["a photo of a cat", "two dogs on a sofa"])
    with torch.no_grad():
        assert_relative_close(ours.reparameterize().encode_image(images), expected)


def test_a_tiny_mobileclip2_s0_trains_on_csv_data(tmp_path, capsys):
    """`cliplab train --model MobileCLIP2-S0` with tiny overrides on a CSV: two steps, finite losses."""
    import json

    from cliplab.cli import main
    from data_fixtures import make_manifest

    overrides = "{" + ", ".join(f"{key}: {value}" for key, value in TINY.items()) + "}"
    code = main(["train", "--logs", str(tmp_path / "logs"), "--name", "run", "--model", NAME, "--dataset-type", "csv",
                 "--train-data", str(make_manifest(tmp_path / "data", 8)), "--max-steps", "2", "--batch-size", "4",
                 "--workers", "0", "--threads", "1", "--no-progress-bar", "--no-tensorboard",
                 "--log-every-n-steps", "1", "--set", f"model.overrides={overrides}"])
    assert code == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (tmp_path / "logs" / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [record["loss"] for record in records if record["kind"] == "train"]
    assert len(losses) == 2 and all(0 < loss < 10 for loss in losses)

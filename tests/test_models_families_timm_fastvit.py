"""Tower family "timm_fastvit" against open_clip 3.3.0 + timm 1.0.31: small variants of MobileCLIP2-S0
(BatchNorm attention stage, squeeze-excited downsampling) and MobileCLIP2-S3 (five stages,
LayerNorm2d before attention, no stem scale branch) with random weights and random BatchNorm
statistics give equal features through the family's key rules in both directions (fp32, eval,
1e-5 relative), and from an open_clip hub directory with open_clip's eval preprocessing;
`reparameterize()` folds the train-time branches with unchanged features, into timm's own inference
layout and values (`timm.utils.reparameterize_model`); the lock groups are timm's, the lock is
open_clip's and a locked group keeps its BatchNorm statistics; the converter reads timm's facts,
exports by name and refuses what it does not build; stochastic depth is timm's; a tiny MobileCLIP2-S0
trains; real-size hub directories load and export back (slow)."""

import dataclasses

import pytest
import torch

from cliplab.errors import UnsupportedArchitectureError
from cliplab.models import build_model, create_model
from cliplab.models.families.timm_fastvit import TimmFastVitConfig
from cliplab.models.open_clip_config import builtin_open_clip_config, config_from_open_clip, config_to_open_clip
from cliplab.pretrained.key_maps import from_cliplab
from cliplab.pretrained.open_clip_keys import open_clip_rules
from open_clip_preprocess import assert_hub_preprocessing_equals_open_clips
from reference_libraries import assert_relative_close, open_clip, open_clip_model, timm
from timm_fixtures import (SmallTimmTower, assert_checkpointing_changes_nothing_and_every_parameter_learns,
                           assert_groups_are_timms, assert_hub_directory_loads_as_open_clips, assert_lock_is_open_clips,
                           assert_real_size_round_trip, assert_refused_by_name, assert_same_features,
                           assert_trains_on_a_csv, noise_manifest, side_by_side)

torch.set_num_threads(2)
NAME = "MobileCLIP2-S0"
S0 = SmallTimmTower(NAME, {"layers": (1, 1, 1, 2), "embed_dims": (16, 32, 32, 64)},
                    {"layers": [1, 1, 1, 2], "widths": [16, 32, 32, 64]}, 64)
S3 = SmallTimmTower("MobileCLIP2-S3", {"layers": (1,) * 5, "embed_dims": (16, 32, 32, 64, 64)},
                    {"layers": [1] * 5, "widths": [16, 32, 32, 64, 64]}, 64)
TINY = {"vision.layers": [1, 1, 1, 1], "vision.widths": [8, 16, 16, 32], "vision.image_size": 64,
        "text.width": 32, "text.heads": 2, "text.layers": 1, "embed_dim": 32, "preprocess.image_size": 64}


def hub_preprocess(name: str, tag: str) -> dict:
    return dict(open_clip().get_pretrained_cfg(name, tag))


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


@pytest.mark.parametrize("small", [S0, S3], ids=["S0", "S3"])
def test_small_variants_equal_open_clip_through_the_key_rules_both_ways(small):
    reference, ours, images = side_by_side(small)
    assert_same_features(ours, reference, images)
    with torch.no_grad():  # the tokens are the final conv's feature map, row-major
        expected = reference.visual.trunk.forward_features(images).flatten(2).transpose(1, 2)
        assert_relative_close(ours.vision_tower.forward_tokens(images), expected)


def test_a_hub_directory_loads_with_open_clips_features_and_eval_preprocessing(tmp_path):
    assert_hub_directory_loads_as_open_clips(S0, tmp_path / "hub", hub_preprocess(NAME, "dfndr2b"))


def test_reparameterize_folds_the_branches_as_timm_does_with_unchanged_features():
    """cliplab's folded model: the features of the unfolded one (1e-5 relative), timm's
    reparameterized trunk's tensor for tensor (names through the key rules: timm's
    `inference_mode` layout), a config that says so and builds the folded layout again."""
    reference, ours, images = side_by_side(S0)
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
        if tensor.is_floating_point():
            assert_relative_close(ours_folded[key], tensor)
    rebuilt = build_model(ours.config).eval()
    rebuilt.load_state_dict(ours.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.encode_image(images), ours.encode_image(images))


def test_the_groups_are_timms_and_the_lock_is_open_clips():
    """Groups as timm's FastVit matcher counts them: the stem; each stage's first block with its
    downsampling and positional encoding; each further block; the final conv with timm's classifier
    (the projection): 7 for these depths."""
    assert len(build_model(S0.config()).vision_tower.parameter_groups()) == 7
    assert_groups_are_timms(S0)
    assert_lock_is_open_clips(S0, [0, 1, 2, 7])


def test_a_locked_tower_keeps_the_batch_norm_statistics_of_its_locked_groups():
    """open_clip's freeze_bn_stats: the BatchNorms of the locked groups normalise with their running
    statistics and never update them, in training too; the unlocked last group's follow the batches."""
    model = build_model(S0.config())
    stem, final = model.vision_tower.stem[0].conv_kxk[0].bn, model.vision_tower.final_conv.conv_kxk[0].bn
    stem_mean, final_mean = stem.running_mean.clone(), final.running_mean.clone()
    model.lock_image_tower(unlocked_groups=1, freeze_bn_stats=True)
    model.train()
    with torch.no_grad():
        model.encode_image(S0.images())
    assert not stem.training and final.training
    assert torch.equal(stem.running_mean, stem_mean) and not torch.equal(final.running_mean, final_mean)


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
        config_to_open_clip(S0.config())
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
    assert_refused_by_name(NAME, change, message)


def test_open_clips_linear_head_is_read_as_the_models_projection():
    model_cfg = builtin_open_clip_config(NAME)
    model_cfg["vision_cfg"].update(timm_proj="linear", timm_proj_bias=True, timm_pool="")
    config = config_from_open_clip(model_cfg)
    assert (config.vision.projection, config.vision.timm_classifier, config.vision.pool) == ("linear_bias", False, "avg")
    names = from_cliplab({"image_projection.weight": torch.empty(0)}, open_clip_rules(config))
    assert list(names) == ["visual.head.proj.weight"]


def test_stochastic_depth_rises_over_the_blocks_as_timms():
    """open_clip's timm_drop_path: each block's drop probability is timm's (the MLP branch of a
    RepMixer block, both branches of an attention block)."""
    model_cfg = S0.model_cfg()
    model_cfg["vision_cfg"]["timm_drop_path"] = 0.1
    theirs = open_clip_model(model_cfg, timm_kwargs=S0.timm_kwargs).visual.trunk
    config = config_from_open_clip(model_cfg)
    assert config.vision.drop_path == 0.1 and config_from_open_clip(config_to_open_clip(config)) == config
    ours = build_model(dataclasses.replace(S0.config(), vision=dataclasses.replace(S0.config().vision,
                                                                                    drop_path=0.1))).vision_tower
    expected = [getattr(block.drop_path if hasattr(block, "drop_path") else block.drop_path1, "drop_prob", 0.0)
                for stage in theirs.stages for block in stage.blocks]
    assert [getattr(block.drop_path, "probability", 0.0) for stage in ours.stages for block in stage.blocks] == expected
    assert expected[-1] == pytest.approx(0.1) and expected[0] == 0.0


def test_gradient_checkpointing_changes_nothing_and_every_parameter_learns():
    assert_checkpointing_changes_nothing_and_every_parameter_learns(S0)


def test_a_tiny_override_trains_on_a_csv(tmp_path):
    assert_trains_on_a_csv(NAME, TINY, noise_manifest(tmp_path / "data", 8), tmp_path)


def test_fsdp_units_are_the_stages():
    model = create_model(NAME, device="meta", **TINY)
    assert model.fsdp_units() == [*model.vision_tower.stages, *model.text_tower.transformer.blocks]


# open_clip's pretrained configs of the MobileCLIP hub directories: bilinear shortest-side resize,
# mean 0 / std 1 (MobileCLIP, MobileCLIP2-S0/S2) or OpenAI's statistics (MobileCLIP2-S3/S4).
@pytest.mark.parametrize("name, tag", [("MobileCLIP-S1", "datacompdr"), (NAME, "dfndr2b"),
                                       ("MobileCLIP2-S3", "dfndr2b")])
def test_eval_preprocessing_of_the_hub_config_equals_open_clips(name, tag, tmp_path):
    assert_hub_preprocessing_equals_open_clips(name, tag, tmp_path)


@pytest.mark.slow
def test_a_real_size_hub_directory_loads_and_exports_back_to_open_clip_and_folds(tmp_path):
    """MobileCLIP2-S0 at real size (75M parameters, random BatchNorm statistics); the loaded model's
    features stay after `reparameterize()`."""
    import cliplab

    assert_real_size_round_trip(NAME, hub_preprocess(NAME, "dfndr2b"), tmp_path)
    model = cliplab.load(tmp_path / "hub")[0]
    images = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        unfolded = model.encode_image(images)
        assert_relative_close(model.reparameterize().encode_image(images), unfolded)

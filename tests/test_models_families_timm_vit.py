"""Tower family "timm_vit" against open_clip 3.3.0 + timm 1.0.31: small variants of open_clip's
timm ViTs (timm's own options, fewer and narrower blocks, small images) with random weights give
equal features through the family's key rules in both directions (fp32, eval, 1e-5 relative):
the medium GAP ViT, SigLIP (MAP pooling, exact GELU), SigLIP2 (tanh GELU text tower, Gemma-sized
vocabulary shrunk), MobileCLIP2-B (conv stem, class token outside the positions, timm's classifier
as the projection) and MobileCLIP2-L-14 (norm before the blocks, eps 1e-5, drop path). The open_clip
converter reads timm's facts and refuses what it does not build; locking follows open_clip's
`TimmModel.lock`; a real-size export loads in open_clip (slow)."""

import dataclasses

import pytest
import torch

from cliplab.data.preprocess_config import PreprocessConfig
from cliplab.errors import UnsupportedArchitectureError
from cliplab.models import build_model
from cliplab.models.families.timm_vit import TimmVitConfig
from cliplab.models.open_clip_config import builtin_open_clip_config, config_from_open_clip, config_to_open_clip
from cliplab.pretrained.key_maps import from_cliplab, to_cliplab
from cliplab.pretrained.open_clip_keys import open_clip_rules
from reference_libraries import (assert_relative_close, open_clip, open_clip_model, randomize_, reference_mode,
                                 small_open_clip_cfg)
from timm_fixtures import assert_refused_by_name

torch.set_num_threads(2)
NAME = "vit_medium_patch16_gap_256"
SMALL_TIMM = {"depth": 2, "embed_dim": 64, "num_heads": 4, "img_size": 32, "patch_size": 8}
SMALL_TEXT = {"width": 32, "heads": 2, "layers": 2}
# open_clip name -> (timm keyword overrides, the same sizes as cliplab's vision fields, image side,
# text_cfg overrides, embed_dim).
SMALL = {
    NAME: (SMALL_TIMM, {"width": 64, "layers": 2, "heads": 4, "patch_size": 8}, 32, SMALL_TEXT, 32),
    "ViT-B-16-SigLIP": (SMALL_TIMM, {"width": 64, "layers": 2, "heads": 4, "patch_size": 8}, 32,
                        {**SMALL_TEXT, "vocab_size": 500, "context_length": 16}, 64),
    "ViT-B-16-SigLIP2": (SMALL_TIMM, {"width": 64, "layers": 2, "heads": 4, "patch_size": 8}, 32,
                         {**SMALL_TEXT, "vocab_size": 500, "context_length": 16}, 64),
    # The conv stem's channels are fixed by timm's model function (768), so only the depth shrinks.
    "MobileCLIP2-B": ({"depth": 2, "img_size": 32}, {"layers": 2}, 32, SMALL_TEXT, 32),
    "MobileCLIP2-L-14": ({"depth": 2, "embed_dim": 64, "num_heads": 4, "img_size": 28},
                         {"width": 64, "layers": 2, "heads": 4}, 28, SMALL_TEXT, 32),
}


def small_config(name: str):
    """cliplab's config of the small variant of `name` (see `SMALL`)."""
    _, vision_sizes, side, text_cfg, embed_dim = SMALL[name]
    model_cfg = builtin_open_clip_config(name)
    model_cfg["text_cfg"].update(text_cfg)
    full = config_from_open_clip(model_cfg)
    vision = dataclasses.replace(full.vision, image_size=side, **vision_sizes)
    return dataclasses.replace(full, embed_dim=embed_dim, vision=vision, preprocess=PreprocessConfig(image_size=side))


def small_pair(name: str, seed: int = 3):
    """(open_clip's small variant of `name` with random weights, cliplab's config of the same sizes)."""
    timm_kwargs, _, _, text_cfg, embed_dim = SMALL[name]
    model_cfg = small_open_clip_cfg(name, embed_dim=embed_dim, text_cfg=text_cfg)
    return randomize_(open_clip_model(model_cfg, timm_kwargs=timm_kwargs), seed=seed), small_config(name)


def loaded_pair(name: str):
    """(open_clip's small model, cliplab's with its weights through the key rules, the rules)."""
    reference, config = small_pair(name)
    ours = build_model(config).eval()
    prefix = "text." if builtin_open_clip_config(name).get("custom_text") else ""
    rules = open_clip_rules(config, prefix)
    ours.load_state_dict(to_cliplab(reference.state_dict(), ours.state_dict(), rules, "open_clip"))
    return reference, ours, rules


def text_tokens(model, batch: int = 3) -> torch.Tensor:
    """Random ids below the vocabulary, some rows ending in padding (id 0)."""
    text = model.config.text
    tokens = torch.randint(1, text.vocab_size, (batch, text.context_length), generator=torch.Generator().manual_seed(5))
    tokens[1, text.context_length // 2:] = 0
    return tokens


@pytest.mark.parametrize("name", list(SMALL))
def test_a_small_variant_equals_open_clip_through_the_key_rules_both_ways(name):
    reference, ours, rules = loaded_pair(name)
    theirs_state = reference.state_dict()
    back = from_cliplab(ours.state_dict(), rules)
    assert sorted(back) == sorted(theirs_state)
    assert all(torch.equal(back[key], theirs_state[key]) for key in back)
    side = ours.config.vision.image_size
    images = torch.randn(3, 3, side, side, generator=torch.Generator().manual_seed(4))
    tokens = text_tokens(ours)
    with torch.no_grad(), reference_mode():
        assert_relative_close(ours.encode_image(images), reference.encode_image(images))
        assert_relative_close(ours.encode_text(tokens), reference.encode_text(tokens))
        assert_relative_close(ours.logit_scale, reference.logit_scale)
        if ours.logit_bias is not None:
            assert_relative_close(ours.logit_bias, reference.logit_bias)
        prefix = int(ours.vision_tower.class_embedding is not None)
        assert_relative_close(ours.vision_tower.forward_tokens(images),
                              reference.visual.trunk.forward_features(images)[:, prefix:])


@pytest.mark.slow
def test_a_small_mobileclip2_b_hub_directory_loads_with_open_clips_features(tmp_path):
    """cliplab's reader of an open_clip hub directory (conv stem, timm's classifier as the head;
    slow: timm fixes the stem's 768 channels, so even two blocks are 15M parameters to write and
    read; the key-rules test above is the default suite's check of the same conversion)."""
    from timm_fixtures import SmallTimmTower, assert_same_features, smaller_timm_facts

    small = SmallTimmTower("MobileCLIP2-B", {"depth": 2, "img_size": 32}, {"layers": 2}, 32)
    small.write_hub(tmp_path / "hub", dict(open_clip().get_pretrained_cfg("MobileCLIP2-B", "dfndr2b")))
    with smaller_timm_facts(small.model_cfg()["vision_cfg"]["timm_model_name"], small.timm_kwargs):
        ours = small.cliplab_from_hub(tmp_path / "hub")
    assert_same_features(ours, small.open_clip_from_hub(tmp_path / "hub"), small.images(2))


def test_the_converter_reads_timms_facts():
    def vision(name):
        return config_from_open_clip(builtin_open_clip_config(name)).vision

    assert vision(NAME) == TimmVitConfig(timm_model_name=NAME, image_size=256, patch_size=16, width=512, layers=12,
                                         heads=8, qkv_bias=False, layer_scale=1e-6, class_token=False, pool="avg",
                                         fc_norm=False, projection="linear")
    assert vision("ViT-SO400M-16-SigLIP2-384") == TimmVitConfig(
        timm_model_name="vit_so400m_patch16_siglip_384", image_size=384, patch_size=16, width=1152, layers=27,
        heads=16, mlp_ratio=3.7362, class_token=False, pool="map", activation="gelu_tanh", projection="none")
    assert vision("MobileCLIP-B") == TimmVitConfig(
        timm_model_name="vit_base_mci_224", image_size=224, class_token_position=False, stem="conv",
        projection="linear_bias", timm_classifier=True)
    assert vision("MobileCLIP2-L-14") == TimmVitConfig(
        timm_model_name="vit_large_patch14_clip_224", image_size=224, patch_size=14, width=1024, layers=24, heads=16,
        norm_pre=True, norm_eps=1e-5, drop_path=0.1, projection="linear_bias", timm_classifier=True)
    siglip2 = config_from_open_clip(builtin_open_clip_config("ViT-B-16-SigLIP2"))
    assert (siglip2.kind, siglip2.init_logit_bias, siglip2.text.activation, siglip2.text.vocab_size) == (
        "siglip", -10, "gelu_tanh", 256000)
    assert (siglip2.text.pool, siglip2.text.causal, siglip2.text.norm_eps, siglip2.text.projection) == (
        "last", False, 1e-6, "linear_bias")


@pytest.mark.parametrize("name", ["ViT-B-16-SigLIP2", "MobileCLIP2-B", "MobileCLIP2-L-14", NAME])
def test_export_names_the_timm_model_and_reads_back(name):
    config = config_from_open_clip(builtin_open_clip_config(name))
    exported = config_to_open_clip(config)
    assert exported["vision_cfg"]["timm_model_name"] == builtin_open_clip_config(name)["vision_cfg"]["timm_model_name"]
    assert config_from_open_clip(exported) == config
    assert exported["text_cfg"].get("act_kwargs") == builtin_open_clip_config(name)["text_cfg"].get("act_kwargs")


def test_export_refuses_other_sizes():
    with pytest.raises(UnsupportedArchitectureError, match=r"open_clip cannot represent this model: timm's "
                                                           r"vit_medium_patch16_gap_256 is not this tower: "
                                                           r"vision.image_size=32 \(timm: 256\)"):
        config_to_open_clip(small_config(NAME))


@pytest.mark.parametrize("change, message", [
    ({"timm_pool": "max"}, r"needs global_pool='max', which the timm tower family 'timm_vit' does not build yet"),
    ({"timm_proj": "mlp"}, r"needs timm_proj='mlp'"),
    ({"timm_drop": 0.1}, r"needs timm_drop=0.1"),
    ({"patch_dropout": 0.5}, r"needs patch_dropout=0.5"),
    ({"image_size": 224}, r"vision_cfg.image_size=224 differs from timm's img_size 256"),
])
def test_options_the_family_does_not_build_are_refused_by_name(change, message):
    assert_refused_by_name(NAME, change, message)


def test_the_text_towers_tanh_gelu_is_read_only_on_gelu():
    model_cfg = builtin_open_clip_config("ViT-B-16-SigLIP2")
    with pytest.raises(UnsupportedArchitectureError, match=r"text_cfg.act_kwargs=\{'approximate': 'tanh'\} with "
                                                           r"quick_gelu: cliplab reads"):
        config_from_open_clip({**model_cfg, "quick_gelu": True})
    model_cfg["text_cfg"]["act_kwargs"] = {"approximate": "none", "inplace": True}
    with pytest.raises(UnsupportedArchitectureError, match=r"text_cfg.act_kwargs="):
        config_from_open_clip(model_cfg)


def trainable(model, prefix):
    return {key for key, parameter in model.named_parameters() if key.startswith(prefix) and parameter.requires_grad}


@pytest.mark.parametrize("name, unlocked", [(NAME, 0), ("ViT-B-16-SigLIP", 1), ("MobileCLIP2-B", 2)])
def test_locking_follows_open_clips_timm_model_lock(name, unlocked):
    """open_clip freezes timm's parameter groups of the trunk (the last norm with the last block,
    the attention pool and timm's classifier a group of their own) and leaves `visual.head`
    trainable; cliplab's lock, norms frozen too, leaves trainable exactly the same tensors."""
    reference, ours, rules = loaded_pair(name)
    reference.lock_image_tower(unlocked_groups=unlocked)
    ours.lock_image_tower(unlocked_groups=unlocked)
    ours_trainable = set(from_cliplab({key: torch.empty(0) for key in trainable(ours, "")}, rules))
    assert {key for key in ours_trainable if key.startswith("visual.")} == trainable(reference, "visual.")


def test_a_locked_trunk_trains_open_clips_head_and_freezes_timms_classifier():
    gap = build_model(small_config(NAME))
    gap.lock_image_tower()
    assert trainable(gap, "image_projection.") == {"image_projection.weight"} and not trainable(gap, "vision_tower.")
    mobile = build_model(small_config("MobileCLIP2-B"))
    mobile.lock_image_tower()
    assert not trainable(mobile, "image_projection.") and not trainable(mobile, "vision_tower.")
    mobile.lock_image_tower(unlocked_groups=1)  # timm's unmatched group: the classifier alone
    assert trainable(mobile, "image_projection.") == {"image_projection.weight", "image_projection.bias"}
    assert not trainable(mobile, "vision_tower.")


def test_locked_conv_stem_keeps_its_batch_norm_statistics_with_the_norms():
    """open_clip's freeze_bn_stats: a locked stem normalises with its running statistics and never
    updates them, in training too; without it the statistics follow the batches."""
    model = build_model(small_config("MobileCLIP2-B"))
    stem = model.vision_tower.patch_embedding
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    model.lock_image_tower(unlocked_groups=1, freeze_bn_stats=False)
    model.train()(images, torch.ones(4, 77, dtype=torch.long))
    assert stem.norm1.training and not torch.equal(stem.norm1.running_mean, torch.zeros(192))
    model = build_model(small_config("MobileCLIP2-B"))
    stem = model.vision_tower.patch_embedding
    model.lock_image_tower(unlocked_groups=1, freeze_bn_stats=True)
    model.train()
    assert not stem.norm1.training and not stem.norm2.training and model.vision_tower.norm_pre.training
    with torch.no_grad():
        trained = model.vision_tower(images)
        assert torch.equal(stem.norm1.running_mean, torch.zeros(192)) and torch.equal(stem.norm2.running_var,
                                                                                       torch.ones(192))
        assert torch.equal(trained, model.eval().vision_tower(images))


def test_the_blocks_are_fsdp_units():
    model = build_model(small_config("ViT-B-16-SigLIP2"))
    units = model.fsdp_units()
    assert units[:2] == list(model.vision_tower.transformer.blocks) and len(units) == 4


# open_clip's pretrained configs of the families' hub directories (open_clip writes them as
# preprocess_cfg): SigLIP's squash resize with mean/std 0.5, MobileCLIP's shortest-side bilinear
# with mean 0 / std 1, MobileCLIP2-L-14's bicubic with OpenAI's statistics; the ViT-SO400M at 384.
@pytest.mark.parametrize("name, tag", [("ViT-B-16-SigLIP2", "webli"), ("ViT-SO400M-14-SigLIP-384", "webli"),
                                       ("MobileCLIP2-B", "dfndr2b"), ("MobileCLIP2-L-14", "dfndr2b")])
def test_eval_preprocessing_of_the_hub_config_equals_open_clips(name, tag, tmp_path):
    from open_clip_preprocess import assert_hub_preprocessing_equals_open_clips

    assert_hub_preprocessing_equals_open_clips(name, tag, tmp_path)


def test_siglip2_trains_from_scratch_with_a_partly_locked_image_tower(tmp_path, capsys):
    """`cliplab train --model ViT-B-16-SigLIP2 --siglip` (small overrides, a tokenizer trained on the
    captions): the SigLIP loss trains; with --lock-image --lock-image-unlocked-groups 1 only the
    attention pool of the image tower trains, as open_clip's TimmModel.lock leaves it."""
    import json

    from cliplab.cli import main
    from cliplab.data.tokenizer import Tokenizer
    from cliplab.data.tokenizer_files import save_tokenizer
    from cliplab.models import create_model
    from data_fixtures import make_manifest

    manifest = make_manifest(tmp_path / "data", 8)
    save_tokenizer(Tokenizer.train([f"caption {index}" for index in range(8)], vocab_size=300, context_length=16),
                   tmp_path / "tokenizer")
    overrides = {"vision.width": 32, "vision.layers": 2, "vision.heads": 2, "vision.image_size": 32,
                 "vision.patch_size": 8, "text.width": 32, "text.heads": 2, "text.layers": 1, "text.vocab_size": 300,
                 "text.context_length": 16, "embed_dim": 32, "preprocess.image_size": 32}
    code = main(["train", "--logs", str(tmp_path / "logs"), "--name", "run", "--model", "ViT-B-16-SigLIP2", "--siglip",
                 "--dataset-type", "csv", "--train-data", str(manifest), "--tokenizer", str(tmp_path / "tokenizer"),
                 "--max-steps", "2", "--batch-size", "4", "--workers", "0", "--threads", "1", "--no-progress-bar",
                 "--no-tensorboard", "--log-every-n-steps", "1", "--lock-image", "--lock-image-unlocked-groups", "1",
                 "--lock-image-freeze-bn-stats",
                 "--set", "model.overrides={" + ", ".join(f"{key}: {value}" for key, value in overrides.items()) + "}"])
    assert code == 0, capsys.readouterr().err
    model = create_model("ViT-B-16-SigLIP2", **overrides)
    pooler = sum(parameter.numel() for parameter in model.vision_tower.pooler.parameters())
    vision = sum(parameter.numel() for parameter in model.vision_tower.parameters())
    total = sum(parameter.numel() for parameter in model.parameters())
    assert f"model: siglip, {total:,} parameters ({total - vision + pooler:,} trainable)" in capsys.readouterr().out
    records = [json.loads(line) for line in (tmp_path / "logs" / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [record["loss"] for record in records if record["kind"] == "train"]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)


@pytest.mark.slow
def test_fine_tuning_a_siglip2_hub_directory_starts_from_open_clips_siglip_loss(tmp_path):
    """`--pretrained <open_clip SigLIP2 hub dir> --siglip` on a CSV: the first step's loss is open_clip's
    SigLipLoss of open_clip's model on the same batch (the checkpoint's logit_scale and logit_bias),
    and the trained logit_bias moves from the checkpoint's by about lr per step (ViT-B-32-SigLIP2-256's
    real image tower, a one-block text tower)."""
    from cliplab.data.tokenizer import Tokenizer
    from cliplab.data.tokenizer_files import save_tokenizer
    from cliplab.train import TrainHooks, train
    from cliplab.train.checkpointing.manager import CheckpointManager
    from data_fixtures import make_manifest
    from finetune_fixtures import finetune_config
    from reference_libraries import write_open_clip_hub
    from safetensors.torch import load_file

    name = "ViT-B-32-SigLIP2-256"
    model_cfg = small_open_clip_cfg(name, text_cfg={"width": 64, "heads": 2, "layers": 1, "vocab_size": 300,
                                                    "context_length": 16})
    reference = write_open_clip_hub(tmp_path / "hub", model_cfg, seed=0,
                                    preprocess_cfg=dict(open_clip().get_pretrained_cfg(name, "webli")))
    save_tokenizer(Tokenizer.train([f"caption {index}" for index in range(8)], vocab_size=300, context_length=16),
                   tmp_path / "tokenizer")
    config = finetune_config(tmp_path / "logs", make_manifest(tmp_path / "data", 4), tmp_path / "hub", steps=2,
                             batch_size=4, tokenizer=str(tmp_path / "tokenizer"))
    config.loss.siglip, config.optim.lr = True, 1e-4
    batches, losses = [], []
    train(config, hooks=TrainHooks(after_batches=lambda step, read: batches.append(read[0]),
                                   modify_loss=lambda step, output: losses.append(output.total.item()) or output))
    loss = open_clip().loss.SigLipLoss()
    with torch.no_grad(), reference_mode():
        expected = loss(*reference.train()(batches[0]["images"], batches[0]["tokens"]))
    assert losses[0] == pytest.approx(float(expected), rel=1e-5)
    trained = load_file(CheckpointManager(tmp_path / "logs" / "finetune" / "checkpoints", keep=2).latest()
                        / "model.safetensors")
    assert abs(float(trained["logit_bias"]) - float(reference.logit_bias.detach())) <= 2.02e-4


@pytest.mark.slow
def test_a_real_size_siglip2_hub_directory_loads_with_open_clips_outputs_and_exports_back(tmp_path):
    """ViT-B-16-SigLIP2 at real size (375M parameters): open_clip's model with random weights in an
    open_clip hub directory, loaded by cliplab (no tokenizer files: ids passed directly), gives
    open_clip's encode_image, encode_text, logit_scale and logit_bias; its export loads in open_clip."""
    import cliplab
    from cliplab.model_io import load_model
    from cliplab.data.tokenizer_openai import openai_bpe_tokenizer
    from reference_libraries import write_open_clip_hub

    name = "ViT-B-16-SigLIP2"
    reference = write_open_clip_hub(tmp_path / "hub", open_clip().get_model_config(name), seed=0,
                                    preprocess_cfg=dict(open_clip().get_pretrained_cfg(name, "webli")))
    ours = load_model(tmp_path / "hub", require_tokenizer=False).model
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    tokens = torch.randint(1, 256000, (2, 64), generator=torch.Generator().manual_seed(6))
    with torch.no_grad(), reference_mode():
        expected = reference.encode_image(images), reference.encode_text(tokens)
        assert_relative_close(ours.encode_image(images), expected[0])
        assert_relative_close(ours.encode_text(tokens), expected[1])
        assert torch.equal(ours.logit_scale, reference.logit_scale) and torch.equal(ours.logit_bias,
                                                                                    reference.logit_bias)
        del reference
        # The export's open_clip config names no Hugging Face tokenizer, so open_clip reads it with the
        # OpenAI BPE (64 positions): token ids are passed directly here.
        directory = cliplab.export(ours, openai_bpe_tokenizer(64), tmp_path / "export", format="open_clip")
        theirs = open_clip().create_model(f"local-dir:{directory}",
                                          pretrained=f"{directory}/open_clip_model.safetensors").eval()
        assert_relative_close(theirs.encode_image(images), expected[0])
        assert_relative_close(theirs.encode_text(tokens), expected[1])


@pytest.mark.slow
def test_a_real_size_export_loads_in_open_clip_with_equal_features(tmp_path):
    """The whole round trip at real size (102M parameters): cliplab's model exported to an open_clip
    hub directory, read by open_clip (its own config and timm), and read back by cliplab."""
    import cliplab
    from cliplab.model_io import load_model
    from cliplab.data.tokenizer_openai import openai_bpe_tokenizer

    torch.manual_seed(0)
    ours = build_model(config_from_open_clip(builtin_open_clip_config(NAME))).eval()
    directory = cliplab.export(ours, openai_bpe_tokenizer(77), tmp_path / "hub", format="open_clip")
    theirs = open_clip().create_model(f"local-dir:{directory}", pretrained=f"{directory}/open_clip_model.safetensors")
    again = load_model(directory).model
    images = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(5))
    with torch.no_grad(), reference_mode():
        expected = theirs.eval().encode_image(images)
        assert_relative_close(ours.encode_image(images), expected)
        assert_relative_close(again.encode_image(images), expected)

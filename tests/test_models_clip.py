"""CLIP / SigLIP assemblies: output contract, per-token latents, locking, checkpointing, training."""

import math

import pytest
import torch
import torch.nn.functional as F

from cliplab.models import create_model

TINY_OVERRIDES = {"embed_dim": 16, "vision.width": 16, "text.width": 16, "text.heads": 2,
                  "text.context_length": 8, "text.vocab_size": 40}


def tiny(name="tiny", output_dict=True, **overrides):
    torch.manual_seed(0)
    return create_model(name, output_dict=output_dict, **{**TINY_OVERRIDES, **overrides})


def batch(size=4, image_size=28, context_length=8):
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(size, 3, image_size, image_size, generator=generator)
    tokens = torch.randint(5, 40, (size, context_length), generator=generator)
    tokens[:, 0] = 1
    for row in range(size):
        end = 3 + row % (context_length - 3)
        tokens[row, end] = 2
        tokens[row, end + 1:] = 0
    return images, tokens


def symmetric_info_nce(output):
    logits = output["logit_scale"] * output["image_features"] @ output["text_features"].T
    labels = torch.arange(logits.shape[0])
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def test_clip_forward_contract():
    model = tiny()
    images, tokens = batch()
    output = model(images, tokens)
    assert sorted(output) == ["image_features", "logit_scale", "text_features"]
    assert output["image_features"].shape == (4, 16) and output["text_features"].shape == (4, 16)
    torch.testing.assert_close(output["image_features"].norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(output["text_features"].norm(dim=-1), torch.ones(4))
    assert output["logit_scale"].item() == pytest.approx(1 / 0.07, rel=1e-6)
    model.eval()
    torch.testing.assert_close(model.encode_image(images, normalize=True), model(images, tokens)["image_features"])
    torch.testing.assert_close(F.normalize(model.encode_text(tokens), dim=-1), model.encode_text(tokens, normalize=True))


@pytest.mark.parametrize("name", ["tiny", "tiny-siglip"])
def test_forward_returns_open_clips_tuple_by_default(name):
    images, tokens = batch()
    as_dict = tiny(name).eval()(images, tokens)
    as_tuple = tiny(name, output_dict=False).eval()(images, tokens)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == len(as_dict)
    for value, key in zip(as_tuple, as_dict):
        torch.testing.assert_close(value, as_dict[key], rtol=0, atol=0)


def test_siglip_has_logit_bias_with_its_init():
    output = tiny("tiny-siglip")(*batch())
    assert output["logit_scale"].item() == pytest.approx(10.0, rel=1e-6)
    assert output["logit_bias"].item() == -10.0


@pytest.mark.parametrize("name, image_tokens", [("tiny", 49), ("tiny-vit", 49)])
def test_per_token_latents(name, image_tokens):
    model = tiny(name, **({"vision.heads": 2} if name == "tiny-vit" else {})).eval()
    images, tokens = batch()
    image_latents = model.encode_image_tokens(images)
    assert image_latents.shape == (4, image_tokens, 16)
    text_latents, mask = model.encode_text_tokens(tokens)
    assert text_latents.shape == (4, 8, 16) and mask.dtype == torch.bool
    assert mask.tolist() == (tokens != 0).tolist()
    torch.testing.assert_close(text_latents, model.text_projection(model.text_tower.forward_tokens(tokens)))
    assert model.text_tower.width == 16 and model.vision_tower.width == 16


def parameters_with_gradient(model):
    return {name for name, parameter in model.named_parameters()
            if parameter.grad is not None and parameter.grad.abs().sum() > 0}


def test_fully_locked_image_tower_gets_no_gradient_and_builds_no_graph():
    model = tiny("tiny-vit", **{"vision.heads": 2})
    model.lock_image_tower()
    images, tokens = batch()
    assert not model.encode_image(images).requires_grad
    symmetric_info_nce(model(images, tokens)).backward()
    trained = parameters_with_gradient(model)
    assert not any(name.startswith(("vision_tower.", "image_projection.")) for name in trained)
    assert {"text_projection.weight", "logit_scale"} <= trained


def test_partially_unlocked_image_tower_trains_only_its_last_groups():
    model = tiny("tiny-vit", **{"vision.heads": 2, "vision.layers": 3})
    model.lock_image_tower(unlocked_groups=2)  # (last block, final norm) + projection
    symmetric_info_nce(model(*batch())).backward()
    image_side = {name for name in parameters_with_gradient(model)
                  if name.startswith(("vision_tower.", "image_projection."))}
    assert image_side and all(name.startswith(("vision_tower.transformer.blocks.2.", "vision_tower.norm_post.",
                                               "image_projection.")) for name in image_side)
    assert "image_projection.weight" in image_side


def test_lock_with_trainable_norms():
    model = tiny()
    model.lock_text_tower(unlocked_layers=0, freeze_layer_norm=False)
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    text_side = {name for name in trainable if name.startswith(("text_tower.", "text_projection."))}
    assert text_side and all("norm" in name for name in text_side)
    assert "text_tower.transformer.blocks.0.norm_attn.weight" in text_side
    symmetric_info_nce(model(*batch())).backward()
    assert model.text_tower.norm_final.weight.grad is not None
    assert model.text_tower.token_embedding.weight.grad is None


def test_a_locked_image_tower_freezes_its_norms_and_only_the_projection_is_group_one():
    # Before: lock_image_tower(freeze_norms=...) with the training default left every norm trainable.
    model = tiny("tiny-vit", **{"vision.heads": 2, "vision.layers": 3})
    model.lock_image_tower()
    assert not any(parameter.requires_grad for name, parameter in model.named_parameters()
                   if name.startswith(("vision_tower.", "image_projection.")))
    model.lock_image_tower(unlocked_groups=1)
    assert {name for name, parameter in model.named_parameters() if parameter.requires_grad
            and name.startswith(("vision_tower.", "image_projection."))} == {"image_projection.weight"}


def _trainable(model):
    return {name for name, parameter in model.named_parameters() if parameter.requires_grad}


@pytest.mark.parametrize("case, tower", [("vit", "image"), ("vit", "text"), ("coca", "text")])
def test_unlocked_groups_are_open_clips_groups(case, tower):
    """For every count of unlocked groups, a parameter trains in cliplab exactly when its open_clip
    counterpart trains after open_clip 3.3.0's lock_image_tower / lock_text_tower (defaults). (CoCa's
    attentional pooler, which open_clip never unlocks, is left out: cliplab groups it with the last block.)"""
    from cliplab.models import build_model
    from cliplab.models.open_clip_config import config_from_open_clip
    from cliplab.pretrained.key_maps import groups_for
    from cliplab.pretrained.open_clip_keys import open_clip_rules, open_clip_text_prefix
    from reference_libraries import open_clip_model
    from test_pretrained_loaders import CASES

    model_cfg = CASES[case]
    config = config_from_open_clip(model_cfg)
    parameters = [name for name, _ in build_model(config).named_parameters()]
    groups = groups_for(parameters, open_clip_rules(config, open_clip_text_prefix(config)))
    layers = model_cfg["vision_cfg" if tower == "image" else "text_cfg"]["layers"]
    for unlocked in range(layers + 3):  # open_clip's L + 2 groups, and none locked
        ours, theirs = build_model(config), open_clip_model(model_cfg)
        getattr(ours, f"lock_{tower}_tower")(unlocked)
        # open_clip's CoCa has no lock methods; its CLIP's delegate to these
        (theirs.visual.lock if tower == "image" else theirs.text.lock if case == "coca" else theirs.lock_text_tower)(unlocked)
        ours_trainable, theirs_trainable = _trainable(ours), _trainable(theirs)
        for group in groups:
            assert ({name in ours_trainable for name in group.ours}
                    == {name in theirs_trainable for name in group.theirs}), (unlocked, group)
        assert len(ours_trainable) < len(parameters) or unlocked == layers + 2


def test_freeze_bn_stats_keeps_the_locked_batch_norms_statistics():
    """open_clip's --lock-image-freeze-bn-stats: without it a locked ResNet tower's BatchNorm running
    statistics still move in training (as in open_clip); with it they stay, through train()."""
    from cliplab.models import build_model
    from cliplab.models.open_clip_config import config_from_open_clip
    from test_pretrained_loaders import CASES

    config = config_from_open_clip(CASES["resnet"])
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    for freeze, moves in ((False, True), (True, False)):
        model = build_model(config)
        model.lock_image_tower(freeze_bn_stats=freeze)
        before = {name: buffer.clone() for name, buffer in model.named_buffers() if "running_" in name}
        model.train()
        model.encode_image(images)
        changed = any(not torch.equal(buffer, before[name]) for name, buffer in model.named_buffers() if name in before)
        assert changed == moves, freeze


def test_lock_rejects_too_many_groups():
    with pytest.raises(ValueError, match=r"unlocked_layers must be an int in \[0, 4\]"):
        tiny().lock_text_tower(unlocked_layers=5)


@pytest.mark.parametrize("name", ["tiny", "tiny-vit"])
def test_gradient_checkpointing_gives_the_same_gradients(name):
    gradients = []
    for checkpointing in (False, True):
        model = tiny(name, **({"vision.heads": 2} if name == "tiny-vit" else {}))
        model.set_grad_checkpointing(checkpointing)
        symmetric_info_nce(model(*batch())).backward()
        gradients.append({n: p.grad for n, p in model.named_parameters()})
    for parameter_name, gradient in gradients[0].items():
        torch.testing.assert_close(gradients[1][parameter_name], gradient, msg=parameter_name)


def test_compile_blocks_compiles_each_repeated_unit_in_place():
    model = tiny("tiny-vit", **{"vision.heads": 2})
    names = list(model.state_dict())
    model.compile_blocks()
    units = model.fsdp_units()
    assert len(units) == model.config.vision.layers + model.config.text.layers
    assert all(unit._compiled_call_impl is not None for unit in units)
    assert list(model.state_dict()) == names  # compiled in place: no `_orig_mod.` in any name


@pytest.mark.slow
def test_compiled_blocks_match_eager_with_one_graph_per_tower_for_every_text_length():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    eager, compiled = (tiny("tiny-vit", **{"vision.heads": 2}) for _ in range(2))
    compiled.compile_blocks()
    images, tokens = batch()
    for length in (8, 6, 5):  # the pooled text forward trims to 7, 5 and 4 positions
        outputs = []
        for model in (eager, compiled):
            model.zero_grad()
            symmetric_info_nce(model(images, tokens[:, :length])).backward()
            outputs.append({name: parameter.grad for name, parameter in model.named_parameters()})
        # Fused kernels reassociate sums: each gradient within 1e-5 of its own largest entry.
        for name, gradient in outputs[0].items():
            assert (outputs[1][name] - gradient).abs().max() <= 1e-5 * gradient.abs().max(), name
    # Every vision block but the last reuses one graph, the last (the class row alone,
    # `VisionTransformer.forward`) has its own, every text block another (any length): three in all.
    assert counters["stats"]["unique_graphs"] == 3


def test_one_optimisation_step_lowers_the_loss_on_a_fixed_batch():
    model = tiny()
    images, tokens = batch(size=8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(2):
        loss = symmetric_info_nce(model(images, tokens))
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert math.isfinite(losses[0]) and losses[1] < losses[0]


def test_outputs_feed_the_loss_modules_directly():
    from cliplab.losses import ClipLoss, SigLipLoss

    images, tokens = batch()
    clip_loss = ClipLoss()(**tiny()(images, tokens))
    siglip_loss = SigLipLoss()(**tiny("tiny-siglip")(images, tokens))
    assert torch.isfinite(clip_loss) and torch.isfinite(siglip_loss)

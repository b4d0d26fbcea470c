"""Towers: output shapes, pooling, padding invariance, causality, patch dropout in training only."""

import pytest
import torch

from cliplab.models.config import TextConfig, VisionConfig
from cliplab.models.families import build_tower
from cliplab.models.towers import ConvTower, TextTransformer, VisionTransformer
from cliplab.models.towers.text_transformer import attention_mask, last_real_index, masked_mean, pool_index

PAD = 0


def text_tower(**overrides):
    values = dict(context_length=8, vocab_size=40, width=16, layers=2, heads=2)
    values.update(overrides)
    torch.manual_seed(0)
    return TextTransformer(TextConfig(**values)).eval()


def padded_tokens():
    # End-of-text is id 2, smaller than every other id: pooling must not look for the largest id.
    return torch.tensor([[1, 30, 31, 32, 2, PAD, PAD, PAD],
                         [1, 33, 2, PAD, PAD, PAD, PAD, PAD],
                         [1, 34, 35, 36, 37, 38, 39, 2]])


TEXT_VARIANTS = [
    dict(pool="eot", causal=True, position="learned"),
    dict(pool="eot", causal=True, position="rotary"),
    dict(pool="cls", causal=True, position="learned"),
    dict(pool="cls", causal=False, position="rotary"),
    dict(pool="mean", causal=False, position="learned"),
]


@pytest.mark.parametrize("variant", TEXT_VARIANTS, ids=lambda v: "-".join(map(str, v.values())))
def test_text_shapes_and_padding_embedding_has_no_effect(variant):
    tower = text_tower(**variant)
    tokens = padded_tokens()
    pooled, hidden, is_real = tower.forward_features(tokens)
    assert pooled.shape == (3, 16) and hidden.shape == (3, 8, 16) and pooled.dtype == torch.float32
    assert is_real.tolist() == (tokens != PAD).tolist()
    assert tower.forward_tokens(tokens).shape == (3, 8, 16)
    with torch.no_grad():
        tower.token_embedding.weight[PAD] = torch.randn(16) * 10
    pooled_after, hidden_after, _ = tower.forward_features(tokens)
    torch.testing.assert_close(pooled_after, pooled, rtol=0, atol=1e-6)
    torch.testing.assert_close(hidden_after[is_real], hidden[is_real], rtol=0, atol=1e-6)


@pytest.mark.parametrize("variant", [v for v in TEXT_VARIANTS if not (v["pool"] == "cls" and
                                                                      v["position"] == "rotary")])
def test_trailing_padding_can_be_trimmed(variant):
    tower = text_tower(**variant)
    tokens = padded_tokens()[:2]
    torch.testing.assert_close(tower(tokens[:, :5]), tower(tokens), rtol=0, atol=1e-5)


@pytest.mark.parametrize("variant, expected", [
    (dict(pool="argmax", causal=True, padding_mask="none"), 5),  # open_clip / OpenAI: end-of-text has the largest id
    (dict(pool="eot", causal=True), 5), (dict(pool="mean", causal=False), 5), (dict(pool="eos", eos_id=2), 5),
    (dict(pool="eot", causal=False, padding_mask="none"), 8), (dict(pool="last", causal=True), 8),
    (dict(pool="cls", causal=True), 8)])
def test_pooled_prefix_length_keeps_what_pooling_reads(variant, expected):
    tower = text_tower(**variant)
    tokens = padded_tokens()[:2]
    if variant["pool"] == "argmax":
        tokens = torch.where(tokens == 2, 39, tokens)  # end-of-text as the largest id, as OpenAI's BPE has it
    length = tower.pooled_prefix_length(tokens)
    assert length == expected
    torch.testing.assert_close(tower(tokens[:, :length]), tower(tokens), rtol=0, atol=1e-5)


@pytest.mark.parametrize("variant", [dict(pool="argmax", causal=True, padding_mask="none"),
                                     dict(pool="eot", causal=True, position="rotary"),
                                     dict(pool="mean", causal=False)], ids=lambda v: "-".join(map(str, v.values())))
def test_pooled_forward_runs_on_the_pooled_prefix_and_equals_the_whole_sequence(variant):
    tower = text_tower(**variant)
    tokens = torch.where(padded_tokens()[:2] == 2, 39, padded_tokens()[:2])  # end-of-text the largest id
    shapes = []
    tower.transformer.register_forward_hook(lambda module, inputs, output: shapes.append(output.shape[1]))
    pooled = tower(tokens)
    whole = tower.forward_features(tokens)[0]  # every position through the blocks
    assert shapes == [5, 8]
    # The same computation on fewer rows: equal up to float reassociation.
    torch.testing.assert_close(pooled, whole, rtol=0, atol=1e-6)


def test_pooled_forward_keeps_every_position_in_training_where_the_step_cuts_instead():
    tower = text_tower(pool="eot", causal=True).train()
    tokens = padded_tokens()[:2]
    shapes = []
    tower.transformer.register_forward_hook(lambda module, inputs, output: shapes.append(output.shape[1]))
    tower(tokens)
    assert shapes == [8]
    assert tower.trainable_prefix_length(tokens) == tower.pooled_prefix_length(tokens) == 5
    # Under dropout fewer positions would draw other masks: the step keeps every column.
    assert text_tower(pool="eot", causal=True, dropout=0.5).train().trainable_prefix_length(tokens) == 8


def test_eot_pooling_takes_last_non_pad_state():
    tower = text_tower(pool="eot")
    tokens = padded_tokens()
    pooled, hidden, _ = tower.forward_features(tokens)
    assert last_real_index(tokens != PAD).tolist() == [4, 2, 7]
    torch.testing.assert_close(pooled, hidden[torch.arange(3), torch.tensor([4, 2, 7])])


def test_masked_mean_closed_form():
    hidden = torch.arange(12, dtype=torch.float32).view(1, 4, 3)
    is_real = torch.tensor([[True, True, False, False]])
    assert masked_mean(hidden, is_real).tolist() == [[1.5, 2.5, 3.5]]


def test_causal_text_states_do_not_see_later_tokens():
    tower = text_tower(pool="eot", causal=True, position="rotary")
    tokens = padded_tokens()
    changed = tokens.clone()
    changed[:, 3] = 20
    hidden, hidden_changed = tower.forward_tokens(tokens), tower.forward_tokens(changed)
    torch.testing.assert_close(hidden[:, :3], hidden_changed[:, :3])
    assert not torch.allclose(hidden[0, 3], hidden_changed[0, 3])


def test_causal_forward_tokens_match_with_and_without_class_token():
    tower = text_tower(pool="cls", causal=True)
    tokens = padded_tokens()
    _, with_class, _ = tower.forward_features(tokens, with_class_token=True)
    torch.testing.assert_close(tower.forward_tokens(tokens), with_class)


def test_text_rejects_bad_tokens():
    tower = text_tower()
    with pytest.raises(ValueError, match="int64/int32"):
        tower(torch.zeros(2, 8))
    with pytest.raises(ValueError, match=r"1 <= T <= context_length=8"):
        tower(torch.ones(2, 9, dtype=torch.long))


@pytest.mark.parametrize("pool, tokens_expected", [("cls", 16), ("mean", 16)])
def test_vit_shapes_and_pooling(pool, tokens_expected):
    torch.manual_seed(0)
    tower = VisionTransformer(VisionConfig(image_size=8, patch_size=2, width=12, layers=1, heads=2,
                                           pool=pool)).eval()
    images = torch.randn(3, 3, 8, 8)
    pooled, tokens = tower.forward_features(images)
    assert pooled.shape == (3, 12) and tokens.shape == (3, tokens_expected, 12)
    if pool == "mean":
        torch.testing.assert_close(pooled, tokens.mean(dim=1))
    assert tower.position_embedding.shape == (16 + (pool == "cls"), 12)


def vit_tower(**overrides):
    torch.manual_seed(0)
    return VisionTransformer(VisionConfig(image_size=8, patch_size=2, width=12, layers=2, heads=2, **overrides))


@pytest.mark.parametrize("final_norm", ["tokens", "pooled"])
def test_vit_pooled_forward_computes_the_class_row_alone_in_the_last_block(final_norm):
    tower = vit_tower(final_norm=final_norm).train()
    images = torch.randn(3, 3, 8, 8)
    rows = []
    tower.transformer.blocks[-1].register_forward_hook(lambda module, inputs, output: rows.append(output.shape[1]))
    weights = torch.randn(3, 12)  # a loss whose gradient is not zero through the final LayerNorm
    (tower(images) * weights).sum().backward()
    fewer_rows = {name: parameter.grad.clone() for name, parameter in tower.named_parameters()}
    tower.zero_grad()
    whole = tower.forward_features(images)[0]
    (whole * weights).sum().backward()
    assert rows == [1, 17]
    # The same sums over fewer rows: equal up to float reassociation, gradients included.
    torch.testing.assert_close(tower(images), whole, rtol=0, atol=1e-6)
    for name, parameter in tower.named_parameters():
        torch.testing.assert_close(fewer_rows[name], parameter.grad, rtol=1e-5, atol=1e-5, msg=name)


def test_vit_pooled_forward_keeps_every_row_under_dropout_in_training_and_for_other_pools():
    tower = vit_tower(dropout=0.5).train()
    images = torch.randn(2, 3, 8, 8)
    torch.manual_seed(3)
    pooled = tower(images)
    torch.manual_seed(3)
    assert torch.equal(pooled, tower.forward_features(images)[0])
    assert tower.eval().pools_class_row_only and not vit_tower(pool="mean").pools_class_row_only


def test_vit_patch_dropout_only_in_training():
    torch.manual_seed(0)
    tower = VisionTransformer(VisionConfig(image_size=8, patch_size=2, width=12, layers=1, heads=2,
                                           patch_dropout=0.75))
    images = torch.randn(2, 3, 8, 8)
    assert tower.train().forward_tokens(images).shape == (2, 4, 12)
    tower.eval()
    assert tower.forward_tokens(images).shape == (2, 16, 12)
    torch.testing.assert_close(tower(images), tower(images), rtol=0, atol=0)


def test_conv_tower_tokens_are_grid_cells():
    tower = build_tower(VisionConfig(kind="conv", image_size=28, width=32, layers=2))
    assert isinstance(tower, ConvTower) and tower.width == 32
    pooled, tokens = tower.forward_features(torch.randn(2, 3, 28, 28))
    assert pooled.shape == (2, 32) and tokens.shape == (2, 49, 32)
    torch.testing.assert_close(pooled, tokens.mean(dim=1))


def test_vision_towers_reject_wrong_image_shape():
    tower = build_tower(VisionConfig(kind="conv", image_size=28, width=32, layers=2))
    with pytest.raises(ValueError, match=r"images must have shape \[B, 3, 28, 28\], got \(2, 1, 28, 28\)"):
        tower(torch.randn(2, 1, 28, 28))
    with pytest.raises(ValueError, match="floating point"):
        tower(torch.zeros(2, 3, 28, 28, dtype=torch.uint8))


def test_text_pooling_rules_closed_form():
    tokens = torch.tensor([[5, 0, 9, 7, 0, 0], [3, 4, 7, 7, 1, 0]])  # 0 inside the text of row 0
    is_real = tokens != 0
    assert pool_index(tokens, is_real, "eot", None).tolist() == [3, 4]
    assert pool_index(tokens, is_real, "argmax", None).tolist() == [2, 2]  # largest id, first on ties
    assert pool_index(tokens, is_real, "eos", 7).tolist() == [3, 2]       # first eos
    assert pool_index(tokens, is_real, "last", None).tolist() == [5, 5]


def test_shifted_padding_mask_is_open_clips_coca_mask():
    """open_clip's CoCa puts the class token's key flag first: key j carries token j - 1's flag."""
    is_real = torch.tensor([[True, True, False]])
    allowed = attention_mask(is_real, "shifted", causal=True, class_token=True)[0, 0]
    # keys: [always, token 0, token 1, token 2 (pad)] then causal
    assert allowed.tolist() == [[True, False, False, False], [True, True, False, False],
                                [True, True, True, False], [True, True, True, False]]
    assert attention_mask(is_real, "none", causal=True, class_token=False) is None


@pytest.mark.parametrize("name", ["resnet", "clipa", "coca", "siglip", "layer_scale_eos_bias"])
def test_pretrained_layouts_train_every_parameter(name):
    """The towers of pretrained layouts (ModifiedResNet, CLIPA, CoCa's attentional pooler and split
    decoder, SigLIP's probe, layer scale) train: every parameter receives a finite gradient."""
    from cliplab.models import build_model
    from cliplab.models.open_clip_config import config_from_open_clip
    from cliplab.pretrained.hf_config import config_from_hf
    from test_models_registry import contrastive_and_caption_loss
    from reference_libraries import randomize_
    from test_pretrained_loaders import CASES

    if name == "siglip":
        config = config_from_hf({"model_type": "siglip", "text_config": {
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
            "vocab_size": 100, "max_position_embeddings": 8}, "vision_config": {
            "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 1, "num_attention_heads": 2,
            "image_size": 16, "patch_size": 8}})
    else:
        config = config_from_open_clip(CASES[name])
    torch.manual_seed(0)
    # Random values everywhere, as pretrained weights have: the ResNet's zero-initialised last
    # BatchNorm scales would otherwise (by design) stop every gradient inside its branches.
    model = randomize_(build_model(config, output_dict=True), seed=1).train()
    size, length = config.vision.image_size, min(config.text.context_length, 12)
    tokens = torch.randint(1, config.text.vocab_size, (3, length))
    loss = contrastive_and_caption_loss(model(torch.randn(3, 3, size, size), tokens))
    loss.backward()
    assert torch.isfinite(loss)
    assert [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
            or p.grad.abs().sum() == 0] == []

"""MobileOne's re-parameterisation: each fold is the eval-mode module it replaces (BatchNorms with
random running statistics), the identity kernel is the identity for any grouping, and a folded
block has timm's inference layout (`reparam_conv` only)."""

import pytest
import torch
from torch import nn

from cliplab.models.layers.mobileone import (ConvBatchNorm, LargeKernelConv, MobileOneBlock, fold_batch_norm,
                                             identity_kernel, reparameterize_all)
from reference_libraries import randomize_ as randomized

TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}  # fp32: folding reassociates the sums


def images(channels: int, side: int = 9) -> torch.Tensor:
    return torch.randn(2, channels, side, side, generator=torch.Generator().manual_seed(1))


def test_fold_batch_norm_is_the_conv_then_the_norm_in_eval_mode():
    branch = randomized(ConvBatchNorm(4, 6, 3, stride=2, groups=2), seed=0)
    kernel, bias = fold_batch_norm(branch.conv.weight, branch.bn)
    x = images(4)
    torch.testing.assert_close(nn.functional.conv2d(x, kernel, bias, stride=2, padding=1, groups=2), branch(x),
                               **TOLERANCE)


@pytest.mark.parametrize("groups", [1, 2, 6])
def test_the_identity_kernel_convolves_to_the_identity(groups):
    x = images(6)
    kernel = identity_kernel(6, groups, 3, x)
    assert torch.equal(nn.functional.conv2d(x, kernel, padding=1, groups=groups), x)


@pytest.mark.parametrize("in_channels, out_channels, kernel_size, stride, groups, options", [
    (3, 8, 3, 2, 1, {}),                                      # the stem's first block: kxk + scale
    (8, 8, 3, 1, 8, {}),                                      # identity + kxk + scale, depthwise
    (8, 8, 1, 1, 1, {}),                                      # identity + 1x1, no scale branch
    (8, 16, 3, 1, 8, {"squeeze_excite": True}),               # the final conv
    (8, 8, 3, 1, 8, {"activation": False, "scale_branch": False, "conv_branches": 0}),  # RepMixer's norm
    (8, 8, 3, 1, 1, {"conv_branches": 3}),
])
def test_a_folded_mobileone_block_gives_the_same_features(in_channels, out_channels, kernel_size, stride, groups,
                                                           options):
    block = randomized(MobileOneBlock(in_channels, out_channels, kernel_size, stride=stride, groups=groups,
                                      **options), seed=2)
    x = images(in_channels)
    with torch.no_grad():
        expected = block(x)
        block.reparameterize()
        torch.testing.assert_close(block(x), expected, **TOLERANCE)
    assert not any(name.startswith(("identity", "conv_kxk", "conv_scale")) for name in block.state_dict())
    built_folded = MobileOneBlock(in_channels, out_channels, kernel_size, stride=stride, groups=groups,
                                  reparameterized=True, **options)
    assert {name: tensor.shape for name, tensor in block.state_dict().items()} == {
        name: tensor.shape for name, tensor in built_folded.state_dict().items()}


def test_a_folded_large_kernel_conv_gives_the_same_features_and_folding_twice_changes_nothing():
    conv = randomized(LargeKernelConv(8, 16, 7, stride=2, groups=8, squeeze_excite=True, activation=True), seed=3)
    x = images(8, side=12)
    with torch.no_grad():
        expected = conv(x)
        reparameterize_all(nn.Sequential(conv))
        weight = conv.reparam_conv.weight.clone()
        conv.reparameterize()
        assert torch.equal(conv.reparam_conv.weight, weight)
        torch.testing.assert_close(conv(x), expected, **TOLERANCE)
    assert sorted(name.split(".")[0] for name in conv.state_dict()) == ["reparam_conv"] * 2 + ["se"] * 4


def test_training_mode_uses_the_batch_statistics_of_every_branch():
    """Before folding, a block trains like timm's: each branch's BatchNorm normalises with its batch."""
    block = MobileOneBlock(4, 4, 3, groups=4).train()
    x = images(4)
    branches = (block.conv_scale(x) + nn.functional.batch_norm(x, None, None, block.identity.weight,
                                                               block.identity.bias, training=True)
                + block.conv_kxk[0](x))
    torch.testing.assert_close(block(x), nn.functional.gelu(branches))

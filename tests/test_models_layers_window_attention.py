"""Swin's window layers against timm 1.0.31's own functions and modules: partition and merge,
the relative position index, the shifted-window mask, patch merging, a (shifted, padded) block."""

import pytest
import torch

from cliplab.models.layers.window_attention import (PatchMerging, SwinBlock, relative_position_index,
                                                    shifted_window_mask, window_merge, window_partition)
from reference_libraries import assert_relative_close, timm


def swin():
    return timm().models.swin_transformer


def test_partition_and_merge_are_timms_and_inverse():
    x = torch.randn(2, 12, 8, 5)
    windows = window_partition(x, (4, 2))
    assert torch.equal(windows.flatten(0, 1), swin().window_partition(x, (4, 2)).flatten(1, 2))
    assert torch.equal(window_merge(windows, (4, 2), 12, 8), x)


@pytest.mark.parametrize("window", [(7, 7), (3, 5)])
def test_relative_position_index_is_timms(window):
    assert torch.equal(relative_position_index(window), swin().get_relative_position_index(*window))


@pytest.mark.parametrize("side, window", [(8, 4), (12, 4), (14, 7)])
def test_shifted_window_mask_is_timms(side, window):
    block = swin().SwinTransformerBlock(dim=8, input_resolution=(side, side), num_heads=2, window_size=window,
                                        shift_size=window // 2)
    mask = shifted_window_mask(side, side, (window, window), (window // 2, window // 2))
    assert torch.equal(mask, block.attn_mask)
    assert set(mask.unique().tolist()) == {0.0, -100.0}


def _copied_into(ours: torch.nn.Module, theirs: torch.nn.Module, names: dict[str, str]) -> None:
    with torch.no_grad():
        for ours_name, parameter in ours.named_parameters():
            theirs_name = ours_name
            for old, new in names.items():
                theirs_name = theirs_name.replace(old, new)
            parameter.copy_(theirs.get_parameter(theirs_name))


def test_patch_merging_is_timms_on_odd_grids():
    theirs = swin().PatchMerging(dim=6, out_dim=10)
    torch.nn.init.normal_(theirs.norm.weight)
    ours = PatchMerging(6, 10)
    _copied_into(ours, theirs, {})
    x = torch.randn(2, 5, 7, 6)
    assert torch.equal(ours(x), theirs(x))


@pytest.mark.parametrize("side, shifted", [(10, True), (10, False), (3, True)])
def test_a_block_is_timms_shifted_padded_or_whole(side, shifted):
    """10x10 grid, 4x4 windows: padded to 12 (shifted or not); 3x3: one whole window, never shifted."""
    theirs = swin().SwinTransformerBlock(dim=8, input_resolution=(side, side), num_heads=2, window_size=4,
                                         shift_size=2 if shifted else 0).eval()
    torch.nn.init.normal_(theirs.attn.relative_position_bias_table)
    ours = SwinBlock(8, 2, (side, side), 4, shifted=shifted).eval()
    assert (ours.window, ours.shift) == (tuple(theirs.window_size), tuple(theirs.shift_size))
    _copied_into(ours, theirs, {"norm_attn": "norm1", "norm_mlp": "norm2", "attn.out": "attn.proj",
                                "relative_position_bias": "relative_position_bias_table", "mlp.fc": "mlp.fc1",
                                "mlp.proj": "mlp.fc2"})
    x = torch.randn(2, side, side, 8)
    with torch.no_grad():
        assert_relative_close(ours(x), theirs(x))

"""Stochastic depth: the identity in eval mode and at probability 0; in training each sample is
zeroed or scaled by 1 / keep as a whole; the per-block rates are timm's (per stage too)."""

import pytest
import torch

from cliplab.models.families.timm_staged import stage_drop_path_rates
from cliplab.models.layers.drop_path import DropPath, drop_path_rates
from reference_libraries import timm


def test_eval_mode_and_probability_zero_are_the_identity():
    x = torch.randn(5, 3, 2)
    assert DropPath(0.3).eval()(x) is x and DropPath(0.0).train()(x) is x


def test_training_keeps_or_drops_whole_samples_scaled_by_one_over_keep():
    torch.manual_seed(0)
    x = torch.randn(400, 3, 4) + 5.0
    y = DropPath(0.25).train()(x)
    kept = (y != 0).flatten(1).all(dim=1)
    assert torch.equal(kept, (y != 0).flatten(1).any(dim=1))  # a sample is dropped whole or not at all
    assert torch.equal(y[kept], x[kept] * torch.tensor(1 / 0.75))  # the mask holds 1 / keep in float32
    assert 0.65 < kept.float().mean() < 0.85  # 300 of 400 expected; binomial sd 8.7


def test_the_rates_rise_linearly_over_all_blocks_as_timms():
    layers = timm().layers
    for depths in ([3, 3, 27, 3], [2, 2, 18, 2], [1]):
        assert stage_drop_path_rates(0.1, depths) == layers.calculate_drop_path_rates(0.1, depths, stagewise=True)
    assert drop_path_rates(0.1, 12) == layers.calculate_drop_path_rates(0.1, 12)
    assert stage_drop_path_rates(0.2, [2, 1]) == [[0.0, pytest.approx(0.1)], [pytest.approx(0.2)]]


def test_a_probability_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match=r"probability must be in \[0, 1\), got 1.0"):
        DropPath(1.0)

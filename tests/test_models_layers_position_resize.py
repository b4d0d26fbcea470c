"""The position-table rules in closed form: a grid's prefix rows kept and a same-size grid unchanged,
linear text interpolation's sample points, and Long-CLIP's stretching of 77 positions into 248
written out position by position from the paper's rule (20 kept, ratio 4, the last one extrapolated).
The equalities with open_clip's and timm's own functions are in test_models_resized_model.py."""

import pytest
import torch

from cliplab.models.layers.position_resize import (LONGCLIP_KEPT, interpolate_positions, resample_position_grid,
                                                    stretch_positions_longclip)


def _table(rows: int, width: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, width, generator=torch.Generator().manual_seed(seed))


def test_a_grid_keeps_its_prefix_rows_and_resamples_the_rest():
    positions = _table(2 + 4 * 4)
    resized = resample_position_grid(positions, (4, 4), (6, 6), prefix_tokens=2)
    assert resized.shape == (2 + 36, 6)
    assert torch.equal(resized[:2], positions[:2])
    # the same grid size is the identity (bicubic at the sample points themselves)
    torch.testing.assert_close(resample_position_grid(positions, (4, 4), (4, 4), prefix_tokens=2), positions,
                               rtol=0, atol=1e-6)


def test_a_constant_grid_stays_constant_at_any_size():
    positions = torch.cat([torch.zeros(1, 3), torch.full((9, 3), 0.75)])
    resized = resample_position_grid(positions, (3, 3), (7, 7), prefix_tokens=1)
    torch.testing.assert_close(resized[1:], torch.full((49, 3), 0.75), rtol=0, atol=1e-6)


def test_a_grid_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match=r"positions must be \[1 \+ 4\*4, W\]"):
        resample_position_grid(_table(16), (4, 4), (5, 5), prefix_tokens=1)


def test_linear_interpolation_samples_between_the_old_positions():
    positions = _table(4)
    doubled = interpolate_positions(positions, 8)
    # new row n samples old position (n + 0.5) / 2 - 0.5, clamped to [0, 3]
    for row in range(8):
        source = min(max((row + 0.5) / 2 - 0.5, 0.0), 3.0)
        low = min(int(source), 2)
        expected = positions[low] + (source - low) * (positions[low + 1] - positions[low])
        torch.testing.assert_close(doubled[row], expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(interpolate_positions(positions, 4), positions, rtol=0, atol=1e-6)


def test_longclip_stretches_77_positions_into_248_as_the_paper_does():
    positions = _table(77, seed=1)
    stretched = stretch_positions_longclip(positions, 248)
    assert stretched.shape == (248, 6) and LONGCLIP_KEPT == 20
    assert torch.equal(stretched[:20], positions[:20])
    for index in range(56):  # each pair (20 + index, 21 + index) gives 4 positions at 0, 1/4, 2/4, 3/4
        for step in range(4):
            expected = ((4 - step) * positions[20 + index] + step * positions[21 + index]) / 4
            torch.testing.assert_close(stretched[20 + 4 * index + step], expected, rtol=0, atol=1e-6)
    last, before = positions[76], positions[75]
    for step in range(4):  # the last position, extrapolated from the last two
        torch.testing.assert_close(stretched[244 + step], last + step * (last - before) / 4, rtol=0, atol=1e-6)


def test_longclip_at_another_length_uses_that_ratio():
    positions = _table(30, seed=2)
    stretched = stretch_positions_longclip(positions, 40)  # ratio (40 - 20) / (30 - 20) = 2
    assert torch.equal(stretched[:20], positions[:20])
    torch.testing.assert_close(stretched[21], (positions[20] + positions[21]) / 2, rtol=0, atol=1e-6)
    torch.testing.assert_close(stretched[38], positions[29], rtol=0, atol=1e-6)


@pytest.mark.parametrize("rows, length", [(77, 77), (77, 60), (21, 40)])
def test_longclip_only_lengthens_a_table_longer_than_the_kept_part(rows, length):
    with pytest.raises(ValueError, match="Long-CLIP stretching keeps the first 20"):
        stretch_positions_longclip(_table(rows), length)

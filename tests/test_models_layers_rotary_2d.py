"""2-D rotary positions: the tables equal timm 1.0.31's RotaryEmbeddingCat (EVA02's and PE's
settings, on square and non-square grids), a closed form for one entry, and the rotation's
invariant: query-key products depend only on the difference of the two tokens' coordinates."""

import math

import pytest
import torch

from cliplab.models.layers.rotary_2d import apply_pairwise_rotary, axial_rotary_tables, rotate_pairs
from reference_libraries import timm


@pytest.mark.parametrize("grid, options", [
    ((4, 4), {"reference_grid": (16, 16)}),  # EVA02's: rescaled to the reference grid, "ij"
    ((4, 4), {"offset": 1.0, "indexing": "xy", "reference_grid": (14, 14)}),  # PE-Core's
    ((3, 5), {"offset": 1.0, "indexing": "xy", "reference_grid": (6, 8)}),  # non-square: axes kept apart
    ((3, 5), {"temperature": 100.0}),
])
def test_tables_equal_timms_rotary_embedding_cat(grid, options):
    head_dim = 16
    reference = timm().layers.RotaryEmbeddingCat(
        dim=head_dim, in_pixels=False, feat_shape=list(grid), temperature=options.get("temperature", 10000.0),
        grid_offset=options.get("offset", 0.0), grid_indexing=options.get("indexing", "ij"),
        ref_feat_shape=list(options["reference_grid"]) if "reference_grid" in options else None)
    sin, cos = reference.get_embed().chunk(2, dim=-1)
    ours_cos, ours_sin = axial_rotary_tables(grid, head_dim, **options)
    assert torch.equal(ours_cos, cos) and torch.equal(ours_sin, sin)
    x = torch.randn(2, 3, grid[0] * grid[1] + 1, head_dim, generator=torch.Generator().manual_seed(0))
    expected = timm().layers.apply_rot_embed_cat(x[:, :, 1:], reference.get_embed())
    assert torch.equal(apply_pairwise_rotary(x, ours_cos, ours_sin, skip=1), torch.cat((x[:, :, :1], expected), 2))


def test_one_entry_in_closed_form():
    # head_dim 8: bands 1 and 10000^-1/2 per axis; pair j < 2 turns with the row, j >= 2 with the column.
    cos, sin = axial_rotary_tables((2, 3), 8, offset=0.5)
    row, column = 1 + 0.5, 2 + 0.5  # the last patch
    angles = [row, row / 100, column, column / 100]
    expected = torch.tensor([angle for angle in angles for _ in range(2)])
    torch.testing.assert_close(cos[5], expected.cos())
    torch.testing.assert_close(sin[5], expected.sin())


def test_rotate_pairs():
    assert rotate_pairs(torch.tensor([1.0, 2.0, 3.0, 4.0])).tolist() == [-2.0, 1.0, -4.0, 3.0]


def test_scores_depend_only_on_the_coordinate_difference():
    cos, sin = axial_rotary_tables((4, 4), 8)
    query, key = torch.randn(2, 8, generator=torch.Generator().manual_seed(1))
    scale = float(query.norm() * key.norm())  # the size of any score

    def score(first, second):  # (row, column) of the query's and the key's patch
        q = apply_pairwise_rotary(query.expand(1, 1, 16, 8), cos, sin)[0, 0, first[0] * 4 + first[1]]
        k = apply_pairwise_rotary(key.expand(1, 1, 16, 8), cos, sin)[0, 0, second[0] * 4 + second[1]]
        return float(q @ k)

    assert math.isclose(score((0, 1), (2, 3)), score((1, 0), (3, 2)), abs_tol=1e-6 * scale)
    assert abs(score((0, 1), (2, 3)) - score((0, 1), (3, 2))) > 1e-2 * scale


def test_refusals():
    with pytest.raises(ValueError, match="divisible by 4, got 6"):
        axial_rotary_tables((2, 2), 6)
    with pytest.raises(ValueError, match="indexing must be one of"):
        axial_rotary_tables((2, 2), 8, indexing="yx")

import math

import torch

from cliplab.losses.tiling import (
    STABLE_EXP_RANGE,
    Workspace,
    column_lse_direct,
    diagonal_of_tile,
    merge_best,
    merge_lse,
    sigmoid_tile_loss_sum,
    softmax_pair_grad_direct,
    softmax_pair_grad_from_exp_,
    softmax_tile_stats_,
    tile_bounds,
)


def test_tile_bounds_cover_the_range_once():
    assert tile_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert tile_bounds(3, 8) == [(0, 3)]
    assert tile_bounds(0, 8) == []


def test_diagonal_of_tile_picks_the_global_diagonal():
    matrix = torch.arange(49.0).reshape(7, 7)
    for r0, c0 in [(0, 0), (2, 0), (0, 3), (4, 4), (5, 1)]:
        tile = matrix[r0:r0 + 3, c0:c0 + 4]
        expected = [matrix[i, i].item() for i in range(max(r0, c0), min(r0 + 3, c0 + 4))]
        assert diagonal_of_tile(tile, r0, c0).tolist() == expected


def test_softmax_tile_stats_give_row_and_column_logsumexp():
    logits = torch.randn(5, 7, dtype=torch.float64) * 4
    row_max, row_lse, col_lse = softmax_tile_stats_(logits.clone())
    assert torch.equal(row_max, logits.amax(dim=1))
    torch.testing.assert_close(row_lse, torch.logsumexp(logits, dim=1))
    torch.testing.assert_close(col_lse, torch.logsumexp(logits, dim=0))
    torch.testing.assert_close(merge_lse(row_lse[:2], row_lse[2:4]),
                               torch.logsumexp(torch.cat([logits[:2], logits[2:4]], dim=1), dim=1))


def test_columns_far_below_the_tile_maximum_fall_back_to_the_direct_path():
    logits = torch.zeros(3, 2)
    logits[0, 0] = 200.0  # column 1's largest entry is 200 below the tile's largest
    _, _, col_lse = softmax_tile_stats_(logits.clone())
    assert col_lse is None
    torch.testing.assert_close(column_lse_direct(logits), torch.logsumexp(logits, dim=0))


def test_pair_gradient_from_exp_equals_the_direct_formula_and_refuses_overflow():
    logits = torch.randn(4, 6, dtype=torch.float64) * 3
    row_lse, col_lse = torch.logsumexp(logits, 1), torch.logsumexp(logits, 0) - 1.0
    row_shift = logits.amax(dim=1)
    row_weight, col_weight = torch.tensor(0.3, dtype=torch.float64), torch.tensor(-0.7, dtype=torch.float64)
    expected = softmax_pair_grad_direct(logits.clone(), row_lse, col_lse, row_weight, col_weight)
    torch.testing.assert_close(expected, (logits - row_lse[:, None]).exp() * 0.3 - 0.7 * (logits - col_lse).exp())
    exp_tile = (logits - row_shift[:, None]).exp()
    got = softmax_pair_grad_from_exp_(exp_tile, row_shift, row_lse, col_lse, row_weight, col_weight,
                                      torch.empty(4, 6, dtype=torch.float64))
    torch.testing.assert_close(got, expected)
    far_col_lse = col_lse.clone()
    far_col_lse[0] = row_shift.max() - STABLE_EXP_RANGE - 1
    untouched = exp_tile.clone()
    assert softmax_pair_grad_from_exp_(untouched, row_shift, row_lse, far_col_lse, row_weight, col_weight,
                                       torch.empty(4, 6, dtype=torch.float64)) is None
    assert torch.equal(untouched, exp_tile)


def test_merge_best_breaks_ties_towards_the_smaller_index_in_any_order():
    value, index = merge_best(torch.tensor([1.0, 2.0]), torch.tensor([5, 5]), torch.tensor([1.0, 1.0]),
                              torch.tensor([3, 3]))
    assert value.tolist() == [1.0, 2.0] and index.tolist() == [3, 5]


def test_sigmoid_tile_loss_is_the_softplus_sum():
    logits = torch.tensor([[-30.0, 0.0], [5.0, 40.0]])
    expected = sum(math.log1p(math.exp(x)) for x in (-30.0, 0.0, 5.0)) + 40.0
    assert math.isclose(sigmoid_tile_loss_sum(logits, torch.empty(2, 2)).item(), expected, rel_tol=1e-6)


def test_workspace_reuses_its_buffer_for_smaller_tiles():
    workspace = Workspace(torch.zeros(1))
    first = workspace.matrix("logits", 4, 5)
    second = workspace.matrix("logits", 2, 3)
    assert second.shape == (2, 3) and second.data_ptr() == first.data_ptr()

import pytest
import torch
import torch.distributed as dist

from cliplab.distributed.collectives import (
    all_gather_no_grad,
    all_gather_with_grad,
    all_reduce_sum_with_grad,
    gather_batch_sizes,
    row_offsets,
    world_info,
)
from cliplab.distributed.launch import run_on_workers

FEATURE_DIM = 3


def _rank_rows(rank: int, rows: int) -> torch.Tensor:
    """Rows whose values identify their rank and position: 100*rank + 10*row + column."""
    return torch.tensor([[100.0 * rank + 10 * row + column for column in range(FEATURE_DIM)]
                         for row in range(rows)], dtype=torch.float64).reshape(rows, FEATURE_DIM)


def _rank_weights(rank: int, total_rows: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1000 + rank)
    return torch.randn(total_rows, FEATURE_DIM, generator=generator, dtype=torch.float64)


class _LockstepInput(torch.autograd.Function):
    """Identity whose backward averages the gradient over ranks.

    gradcheck perturbs the same input element on every rank at the same moment, so the ranks' inputs
    act as one shared variable; its gradient under the shared objective is the rank-average.
    """

    @staticmethod
    def forward(ctx, tensor):
        return tensor.clone()

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad / dist.get_world_size()


def _collectives_worker(rank, world_size, batch_sizes):
    local_rows = batch_sizes[rank]
    local = _rank_rows(rank, local_rows).requires_grad_(True)
    results = {"world_info": world_info(), "sizes": gather_batch_sizes(local_rows)}

    gathered = all_gather_with_grad(local)
    results["gathered"] = gathered.detach()
    results["gathered_no_grad"] = all_gather_no_grad(local)
    results["no_grad_requires_grad"] = results["gathered_no_grad"].requires_grad
    # Every rank has its own weighted objective; the global objective is their sum.
    (gathered * _rank_weights(rank, sum(batch_sizes))).sum().backward()
    results["grad"] = local.grad.clone()

    reduced_input = torch.full((2,), float(rank + 1), dtype=torch.float64, requires_grad=True)
    reduced = all_reduce_sum_with_grad(reduced_input)
    (reduced * (rank + 1)).sum().backward()
    results["reduced"] = reduced.detach()
    results["reduced_grad"] = reduced_input.grad.clone()

    if len(set(batch_sizes)) == 1:
        # gradcheck needs the same number of collective calls on every rank: equal shapes only.
        generator = torch.Generator().manual_seed(7 + rank)
        probe = torch.randn(local_rows, 2, generator=generator, dtype=torch.float64, requires_grad=True)
        results["gradcheck_gather"] = torch.autograd.gradcheck(
            lambda x: all_gather_with_grad(_LockstepInput.apply(x)), (probe,))
        results["gradcheck_reduce"] = torch.autograd.gradcheck(
            lambda x: all_reduce_sum_with_grad(_LockstepInput.apply(x)) / world_size, (probe,))
    return results


@pytest.mark.parametrize("batch_sizes", [[2, 2], [3, 1, 2], pytest.param([2, 2, 2, 2], marks=pytest.mark.slow),
                                         [1, 3, 0, 2]])  # four equal ranks: under -m slow
def test_gather_with_grad_matches_closed_form(batch_sizes):
    world_size = len(batch_sizes)
    results = run_on_workers(_collectives_worker, world_size, batch_sizes, timeout_s=120)
    expected_gathered = torch.cat([_rank_rows(rank, rows) for rank, rows in enumerate(batch_sizes)])
    summed_weights = sum(_rank_weights(rank, sum(batch_sizes)) for rank in range(world_size))
    offsets = row_offsets(batch_sizes)
    for rank, result in enumerate(results):
        assert result["world_info"] == (rank, world_size)
        assert result["sizes"] == batch_sizes
        assert torch.equal(result["gathered"], expected_gathered)
        assert torch.equal(result["gathered_no_grad"], expected_gathered)
        assert result["no_grad_requires_grad"] is False
        own_rows = slice(offsets[rank], offsets[rank] + batch_sizes[rank])
        torch.testing.assert_close(result["grad"], summed_weights[own_rows], rtol=1e-12, atol=1e-12)
        # sum_r (r+1) = N(N+1)/2, both for the reduced value and for its gradient
        triangular = world_size * (world_size + 1) / 2
        assert torch.equal(result["reduced"], torch.full((2,), triangular, dtype=torch.float64))
        assert torch.equal(result["reduced_grad"], torch.full((2,), triangular, dtype=torch.float64))
        if len(set(batch_sizes)) == 1:
            assert result["gradcheck_gather"] and result["gradcheck_reduce"]


def test_single_process_is_identity():
    tensor = torch.randn(3, 2, requires_grad=True)
    assert world_info() == (0, 1)
    assert gather_batch_sizes(3) == [3]
    assert all_gather_with_grad(tensor) is tensor
    assert torch.equal(all_gather_no_grad(tensor), tensor)
    assert not all_gather_no_grad(tensor).requires_grad
    assert all_reduce_sum_with_grad(tensor) is tensor
    assert row_offsets([3, 2, 4]) == [0, 3, 5]


def test_gather_rejects_a_scalar():
    with pytest.raises(ValueError, match="tensor"):
        all_gather_with_grad(torch.tensor(1.0))

import pytest
import torch

from cliplab.distributed.launch import run_on_workers
from cliplab.distributed.neighbour import (
    neighbour_exchange,
    neighbour_exchange_bidir,
    neighbour_exchange_bidir_with_grad,
    neighbour_exchange_with_grad,
)


def _marked(rank: int, direction: float, rows: int) -> torch.Tensor:
    """[rows, 2] float64 whose values say who sent it and which way: 10*rank + direction + row/100."""
    return torch.stack([torch.full((2,), 10.0 * rank + direction + row / 100, dtype=torch.float64)
                        for row in range(rows)])


def _neighbour_worker(rank, world_size):
    left, right = (rank - 1) % world_size, (rank + 1) % world_size
    rows = rank + 1  # uneven on purpose: every rank knows its neighbours' row counts
    results = {}

    results["shift"] = neighbour_exchange(left, right, _marked(rank, 0.5, rows), recv_rows=left + 1)
    results["bidir"] = neighbour_exchange_bidir(
        left, right, _marked(rank, 0.1, rows), _marked(rank, 0.2, rows),
        recv_rows_from_right=right + 1, recv_rows_from_left=left + 1)

    # Gradients with uneven shapes: loss_r = sum(w_r * received); the gradient of what rank r sent
    # is the weight of the rank that received it.
    sent = _marked(rank, 0.5, rows).requires_grad_(True)
    received = neighbour_exchange_with_grad(left, right, sent, recv_rows=left + 1)
    (received * (rank + 1)).sum().backward()
    results["shift_grad"] = sent.grad.clone()

    to_left = _marked(rank, 0.1, rows).requires_grad_(True)
    to_right = _marked(rank, 0.2, rows).requires_grad_(True)
    from_right, from_left = neighbour_exchange_bidir_with_grad(
        left, right, to_left, to_right, recv_rows_from_right=right + 1, recv_rows_from_left=left + 1)
    (from_right * (rank + 1)).sum().backward(retain_graph=True)
    results["bidir_grad_after_from_right"] = (to_left.grad.clone(), to_right.grad.clone())
    to_left.grad, to_right.grad = None, None
    (from_left * 1000.0 * (rank + 1)).sum().backward()
    results["bidir_grad_after_from_left"] = (to_left.grad.clone(), to_right.grad.clone())

    # gradcheck: every rank perturbs the same element at once, and an exchange only permutes ranks,
    # so the numerical and analytical Jacobians of each rank's output agree (equal shapes needed).
    generator = torch.Generator().manual_seed(rank)
    probe_a = torch.randn(2, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    probe_b = torch.randn(2, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    results["gradcheck_shift"] = torch.autograd.gradcheck(
        lambda x: neighbour_exchange_with_grad(left, right, x), (probe_a,))
    results["gradcheck_bidir"] = torch.autograd.gradcheck(
        lambda a, b: neighbour_exchange_bidir_with_grad(left, right, a, b), (probe_a, probe_b))
    return results


@pytest.mark.parametrize("world_size", [2, 3])
def test_neighbour_exchange_values_gradients_and_gradcheck(world_size):
    results = run_on_workers(_neighbour_worker, world_size, timeout_s=120)
    for rank, result in enumerate(results):
        left, right = (rank - 1) % world_size, (rank + 1) % world_size
        assert torch.equal(result["shift"], _marked(left, 0.5, left + 1))
        from_right, from_left = result["bidir"]
        # The right neighbour's leftward message and the left neighbour's rightward one, also when
        # they are the same process (world_size 2).
        assert torch.equal(from_right, _marked(right, 0.1, right + 1))
        assert torch.equal(from_left, _marked(left, 0.2, left + 1))

        rows = rank + 1
        assert torch.equal(result["shift_grad"], torch.full((rows, 2), float(right + 1), dtype=torch.float64))
        grad_to_left, grad_to_right = result["bidir_grad_after_from_right"]
        assert torch.equal(grad_to_left, torch.full((rows, 2), float(left + 1), dtype=torch.float64))
        assert torch.equal(grad_to_right, torch.zeros(rows, 2, dtype=torch.float64))
        grad_to_left, grad_to_right = result["bidir_grad_after_from_left"]
        assert torch.equal(grad_to_left, torch.zeros(rows, 2, dtype=torch.float64))
        assert torch.equal(grad_to_right, torch.full((rows, 2), 1000.0 * (right + 1), dtype=torch.float64))
        assert result["gradcheck_shift"] and result["gradcheck_bidir"]

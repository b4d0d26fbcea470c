import pytest
import torch
import torch.distributed as dist

from cliplab.distributed.launch import WorkerError, run_on_workers


def _sum_of_ranks(rank, world_size, offset):
    value = torch.tensor([float(rank + offset)])
    dist.all_reduce(value)
    return {"rank": rank, "world_size": world_size, "sum": value.item()}


def _raise_on_rank_one(rank, world_size):
    if rank == 1:
        raise KeyError("deliberate")
    return rank


def test_workers_form_one_group_and_return_by_rank():
    results = run_on_workers(_sum_of_ranks, 3, 10)
    assert [r["rank"] for r in results] == [0, 1, 2]
    assert all(r["world_size"] == 3 for r in results)
    assert all(r["sum"] == 33.0 for r in results)


def test_worker_exception_is_reported_with_its_rank():
    with pytest.raises(WorkerError, match=r"rank 1 raised:(.|\n)*KeyError: 'deliberate'"):
        run_on_workers(_raise_on_rank_one, 2, timeout_s=60)

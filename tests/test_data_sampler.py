import itertools

import pytest

from cliplab.data.sampler import ResumableDistributedBatchSampler, SequentialEvalBatchSampler


def sampler(**overrides):
    arguments = dict(dataset_size=23, batch_size=4, rank=0, world_size=2, seed=1, epoch=0)
    return ResumableDistributedBatchSampler(**{**arguments, **overrides})


def test_ranks_disjoint_equal_and_cover_with_padding():
    per_rank = [list(sampler(rank=rank)) for rank in range(2)]
    assert [len(batches) for batches in per_rank] == [3, 3]
    assert all(len(batch) == 4 for batches in per_rank for batch in batches)
    flat = [index for batches in per_rank for batch in batches for index in batch]
    assert len(flat) == 24
    assert set(flat) == set(range(23))
    # the first 23 positions of the epoch are a permutation; one padding index repeats
    assert len(set(flat)) == 23


def test_resume_from_batch_yields_exactly_the_rest():
    full = list(sampler(rank=1, epoch=3))
    for start in range(4):
        assert list(sampler(rank=1, epoch=3, start_batch=start)) == full[start:]
        assert len(sampler(rank=1, epoch=3, start_batch=start)) == 3 - start


def test_order_depends_on_seed_and_epoch_only():
    assert list(sampler(epoch=1)) == list(sampler(epoch=1))
    assert list(sampler(epoch=1)) != list(sampler(epoch=2))
    assert list(sampler(seed=2)) != list(sampler(seed=1))


def test_num_samples_subset_and_repeat():
    small = sampler(num_samples=8, world_size=1)
    assert small.num_batches == 2
    assert len({i for batch in small for i in batch}) == 8
    big = sampler(num_samples=50, world_size=1, dataset_size=20)
    flat = [i for batch in big for i in batch]
    assert len(flat) == 52 and set(flat) == set(range(20))


def test_no_shuffle_is_in_order():
    assert list(sampler(shuffle=False, world_size=1, dataset_size=8)) == [[0, 1, 2, 3],
                                                                          [4, 5, 6, 7]]


def test_validation():
    with pytest.raises(ValueError, match="start_batch must be in"):
        sampler(start_batch=4)
    with pytest.raises(ValueError, match="rank"):
        sampler(rank=2)
    with pytest.raises(ValueError, match="batch_size"):
        sampler(batch_size=0)


def test_eval_sampler_covers_once_in_order():
    parts = [list(SequentialEvalBatchSampler(dataset_size=10, batch_size=3, rank=r, world_size=3))
             for r in range(3)]
    assert parts == [[[0, 1, 2], [3]], [[4, 5, 6], [7]], [[8, 9]]]
    assert list(itertools.chain.from_iterable(itertools.chain.from_iterable(parts))) == list(
        range(10))

import pytest
import torch

from cliplab.distributed.launch import run_on_workers
from cliplab.distributed.ring import Ring, ring_shards

ROWS = [2, 3, 1, 4]


def _shard_of(rank):
    """Rank r's shard: ROWS[r] rows of 3 columns, every entry identifying its rank and row."""
    rows = torch.arange(ROWS[rank], dtype=torch.float32)[:, None]
    return 100.0 * rank + rows + torch.zeros(1, 3), torch.full((ROWS[rank],), rank, dtype=torch.long)


def _ring_checks(rank, world_size):
    ring = Ring()
    rows = ROWS[:world_size]
    seen = []
    pending = None
    for step, source, (features, owners) in ring_shards(ring, list(_shard_of(rank)), rows):
        seen.append((step, source, features.clone(), owners.clone()))
        # An accumulator travelling with the shard: each rank adds (its rank + 1) to every row.
        contribution = torch.full((features.shape[0], 2), float(rank + 1))
        if pending is not None:
            contribution = contribution + pending.wait()[0]
        pending = ring.shift([contribution], rows[ring.source_rank(step + 1)])
    home = pending.wait()[0]
    return seen, home


@pytest.mark.parametrize("world_size", [2, 3, pytest.param(4, marks=pytest.mark.slow)])  # 3: odd rings; 4 under -m slow
def test_shards_visit_every_rank_and_accumulators_come_home(world_size):
    per_rank = run_on_workers(_ring_checks, world_size, timeout_s=120)
    total = float(sum(range(1, world_size + 1)))
    for rank, (seen, home) in enumerate(per_rank):
        assert [source for _, source, _, _ in seen] == [(rank - step) % world_size for step in range(world_size)]
        for step, source, features, owners in seen:
            expected_features, expected_owners = _shard_of(source)
            assert torch.equal(features, expected_features)
            assert torch.equal(owners, expected_owners)
        assert torch.equal(home, torch.full((ROWS[rank], 2), total))


def test_a_world_of_one_yields_its_own_shard_and_shift_returns_its_input():
    ring = Ring()
    shard = torch.randn(3, 2)
    assert [(step, source) for step, source, _ in ring_shards(ring, [shard], [3])] == [(0, 0)]
    assert ring.shift([shard], 3).wait()[0] is shard


def test_rows_per_rank_must_name_every_rank():
    with pytest.raises(ValueError, match="rows_per_rank"):
        list(ring_shards(Ring(), [torch.zeros(2, 2)], [2, 2]))

"""ShardedInit: a meta-device build that keeps one rank's rows of exactly the full build's values."""

import pytest
import torch
from torch import nn

from cliplab.distributed.shard_init import ShardedInit, ShardedInitError, shard_rows
from cliplab.models import create_model
from cliplab.models.registry import initialisers_on_meta

from train_helpers import SMALL_MODEL


def test_shard_rows_follow_torch_chunk():
    for rows in (0, 1, 5, 8):
        for world_size in (1, 2, 3, 4):
            chunks = torch.arange(rows).chunk(world_size) if rows else ()
            expected = [chunk.tolist() for chunk in chunks] + [[]] * (world_size - len(chunks))
            got = [list(range(rows))[shard_rows(rows, rank, world_size)] for rank in range(world_size)]
            assert got == expected, (rows, world_size)


SMALL_VIT = {"vision.width": 32, "vision.layers": 2, "vision.heads": 2, "text.width": 32, "text.layers": 1,
             "text.heads": 2, "embed_dim": 16}
SMALL_COCA = {"embed_dim": 16, "vision.width": 16, "text.width": 16, "text.heads": 2, "decoder.heads": 2,
              "text.context_length": 8, "text.vocab_size": 30}


@pytest.mark.parametrize("name,overrides", [("tiny", SMALL_MODEL), ("ViT-B-32", SMALL_VIT),
                                            ("tiny-coca", SMALL_COCA)])
def test_every_rank_keeps_its_rows_of_the_full_build(name, overrides):
    torch.manual_seed(3)
    full = create_model(name, output_dict=True, **overrides).state_dict()
    after_full = torch.rand(4)
    for world_size in (2, 3):
        for rank in range(world_size):
            torch.manual_seed(3)
            recorder = ShardedInit(rank, world_size)
            with initialisers_on_meta(), recorder.building():
                model = create_model(name, output_dict=True, **overrides)
            assert all(tensor.is_meta for tensor in model.state_dict().values() if isinstance(tensor, torch.Tensor))
            assert torch.equal(torch.rand(4), after_full)  # the generator advanced as in the full build
            values = recorder.values(model)
            assert set(values.names()) == {key for key in full if not key.endswith("_extra_state")}
            for key in values.names():
                value = full[key]
                rows = shard_rows(value.shape[0], rank, world_size) if value.dim() >= 2 else None
                expected = value if rows is None else value[rows]
                assert torch.equal(values.rows(key, rows), expected), (world_size, rank, key)


class _ValueDependentInit(nn.Module):
    """Initialisers that torch skips on the meta device: truncation close enough to the mean that the
    rejection loop runs, and orthogonal_ (a QR of the whole matrix)."""

    def __init__(self):
        super().__init__()
        self.truncated = nn.Parameter(torch.empty(6, 5))
        self.rotation = nn.Parameter(torch.empty(5, 5))
        nn.init.trunc_normal_(self.truncated, std=1.0, a=-0.5, b=0.5)
        nn.init.orthogonal_(self.rotation)


def test_initialisers_that_skip_meta_tensors_give_the_full_builds_values():
    torch.manual_seed(5)
    full = _ValueDependentInit().state_dict()
    after_full = torch.rand(3)
    for rank in range(2):
        torch.manual_seed(5)
        recorder = ShardedInit(rank, 2)
        with recorder.building():
            model = _ValueDependentInit()
        assert torch.equal(torch.rand(3), after_full)
        values = recorder.values(model)
        for key, value in full.items():
            rows = shard_rows(value.shape[0], rank, 2)
            assert torch.equal(values.rows(key, rows), value[rows]), (rank, key)


def test_an_op_mixing_rows_of_a_sharded_tensor_is_refused():
    recorder = ShardedInit(0, 2)
    with pytest.raises(ShardedInitError, match="cannot be computed shard by shard"), recorder.building():
        weight = nn.Parameter(torch.randn(4, 3))
        weight.data.copy_(weight.data.flip(0))

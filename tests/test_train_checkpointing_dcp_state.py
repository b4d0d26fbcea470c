"""Sharded state in DCP directories: saved by 2 FSDP2 ranks, loaded by 4 and by 1, read offline.

A tiny module with uneven rows (7 rows over 2 and 4 ranks), a 0-d parameter held as a 1-element
vector (as FSDP2 needs; renamed back on save), objective-style heads beside the model and AdamW
state after two steps. Every value loaded must equal, bitwise, the whole value gathered at save
time. One job of four processes holds all three world sizes (process groups of 2, 4 and 1), so the
test pays for one launch.
"""

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from torch.nn.utils import parametrize

from cliplab.distributed.launch import run_on_workers
from cliplab.pretrained.dcp_reader import DcpModelReader, is_sharded_checkpoint
from cliplab.train.checkpointing.dcp_state import load_sharded, save_sharded

_HELD = "parametrizations.logit_scale.original"


class _AsScalar(nn.Module):
    def forward(self, vector):
        return vector.reshape(()).clone()

    def right_inverse(self, scalar):
        return scalar.reshape(1)


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(5, 7), nn.Linear(7, 5)])
        self.logit_scale = nn.Parameter(torch.tensor(2.5))
        self.register_buffer("offset", torch.arange(5.0))

    def forward(self, x):
        for block in self.blocks:
            x = torch.tanh(block(x))
        return (x + self.offset) * self.logit_scale.exp()


class _WithHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = _Model()
        self.objectives = nn.Sequential(nn.Linear(5, 3))

    def forward(self, x):
        return self.objectives(self.model(x))


def _rename(name):
    return name.replace(_HELD, "logit_scale")


def _sharded(seed, mesh):
    torch.manual_seed(seed)
    root = _WithHeads()
    parametrize.register_parametrization(root.model, "logit_scale", _AsScalar())
    for unit in [*root.model.blocks, root.model.parametrizations.logit_scale, root.objectives, root]:
        fully_shard(unit, mesh=mesh)
    optimizer = torch.optim.AdamW(root.parameters(), lr=0.05, foreach=False)
    return root, optimizer


def _whole(value):
    return value.full_tensor() if isinstance(value, DTensor) else value


def _whole_state(root, optimizer):
    """Every parameter, buffer and AdamW entry as a whole tensor (collectives over the mesh)."""
    model = {_rename(name): _whole(value).clone() for name, value in root.state_dict().items()}
    names = {id(parameter): _rename(name) for name, parameter in root.named_parameters()}
    moments = {names[id(parameter)]: {key: _whole(value).clone() for key, value in state.items()}
               for parameter, state in optimizer.state.items()}
    return model, moments


def _save_after_two_steps(directory, group):
    root, optimizer = _sharded(seed=0, mesh=DeviceMesh.from_group(group, "cpu"))
    rank, ranks = dist.get_rank(group), dist.get_world_size(group)
    inputs = torch.linspace(-1, 1, 8 * 5).reshape(8, 5)
    for _ in range(2):
        optimizer.zero_grad()
        root(inputs[rank::ranks]).square().mean().backward()
        optimizer.step()
    save_sharded(directory, root, optimizer, rename=_rename, process_group=group)
    return _whole_state(root, optimizer)


def _load(directory, group):
    root, optimizer = _sharded(seed=1, mesh=DeviceMesh.from_group(group, "cpu"))
    load_sharded(directory, root, optimizer, rename=_rename, process_group=group)
    return _whole_state(root, optimizer), root.model.blocks[0].weight.to_local().shape[0]


def _save_by_two_load_by_four_and_by_one(rank, world_size, directory):
    """Ranks 0-1 train and save; then all four load; then rank 0 loads alone (three meshes of one job)."""
    pair, alone = dist.new_group([0, 1]), dist.new_group([0])  # every rank creates every group
    saved = _save_after_two_steps(directory, pair) if rank < 2 else None
    dist.barrier()
    by_four = _load(directory, dist.group.WORLD)
    by_one = _load(directory, alone) if rank == 0 else None
    return saved, by_four, by_one


def _assert_equal_state(actual, expected):
    (model, moments), (expected_model, expected_moments) = actual, expected
    assert model.keys() == expected_model.keys()
    for name in model:
        assert torch.equal(model[name], expected_model[name]), name
    assert moments.keys() == expected_moments.keys()
    for name in moments:
        assert moments[name].keys() == expected_moments[name].keys() == {"step", "exp_avg", "exp_avg_sq"}
        for key in moments[name]:
            assert torch.equal(moments[name][key], expected_moments[name][key]), (name, key)


@pytest.fixture(scope="module")
def resharded(tmp_path_factory):
    directory = tmp_path_factory.mktemp("dcp") / "step" / "shards"
    return directory, run_on_workers(_save_by_two_load_by_four_and_by_one, 4, directory, timeout_s=300)


@pytest.mark.slow  # one 4-process job; the default suite reshards through the Trainer (test_train_checkpointing_dcp)
def test_state_saved_by_two_ranks_loads_into_four_and_into_one(resharded):
    _, results = resharded
    expected = results[0][0]
    _assert_equal_state(results[1][0], expected)
    four_rows = []
    for _, (state, rows), _ in results:
        _assert_equal_state(state, expected)
        four_rows.append(rows)
    assert four_rows == [2, 2, 2, 1]
    alone, rows = results[0][2]
    assert rows == 7
    _assert_equal_state(alone, expected)


@pytest.mark.slow
def test_offline_reader_gives_the_whole_model_in_bundle_names(resharded):
    directory, results = resharded
    expected_model = results[0][0][0]
    assert is_sharded_checkpoint(directory.parent)
    reader = DcpModelReader(directory)
    model_names = {name[len("model."):] for name in expected_model if name.startswith("model.")}
    assert set(reader.shapes) == model_names == {"blocks.0.weight", "blocks.0.bias", "blocks.1.weight",
                                                 "blocks.1.bias", "logit_scale", "offset"}
    assert tuple(reader.shapes["logit_scale"].shape) == (1,)  # held as [1]; the loader reshapes
    for name in sorted(model_names):
        assert torch.equal(reader.read(name), expected_model["model." + name]), name


def test_directory_without_metadata_is_not_a_checkpoint(tmp_path: Path):
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "__0_0.distcp").write_bytes(b"partial")
    assert not is_sharded_checkpoint(tmp_path)


def _save_per_rank_batch_norm_statistics(rank, world_size, directory):
    """A BatchNorm whose running statistics differ on each rank (each normalised its own batch)."""
    root = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    fully_shard(root, mesh=DeviceMesh.from_group(dist.group.WORLD, "cpu"))
    optimizer = torch.optim.AdamW(root.parameters())
    root(torch.randn(6, 3, generator=torch.Generator().manual_seed(rank))).sum().backward()
    optimizer.step()
    save_sharded(directory, root, optimizer)
    return {name: buffer.clone() for name, buffer in root.named_buffers()}


def test_a_sharded_checkpoint_holds_rank_0s_batch_norm_statistics(tmp_path):
    """As a DDP run's checkpoint (rank 0 writes it) does, not a mix of the ranks' (DCP's default
    deduplication writes each replicated tensor from whichever rank balances the writes)."""
    directory = tmp_path / "shards"
    per_rank = run_on_workers(_save_per_rank_batch_norm_statistics, 2, directory, timeout_s=120)
    reader = DcpModelReader(directory)
    for name in ("1.running_mean", "1.running_var"):
        assert not torch.equal(per_rank[0][name], per_rank[1][name])
        assert torch.equal(reader.read(name), per_rank[0][name]), name

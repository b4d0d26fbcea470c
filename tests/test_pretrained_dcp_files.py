"""DCP directories read without running anything they contain (RELIABILITY 15): `.metadata` through
the restricted unpickler, the values pickled in the shard files weights-only, the index checked
against the files before anything is allocated from it; each failure one line naming the file.

Before: `FileSystemReader.read_metadata` ran a `__reduce__` payload in `.metadata` (and the load then
went on normally), and `DefaultLoadPlanner.load_bytes` ran one stored as a value in a shard file.
The directories here are written by one process (`no_dist=True`); FSDP2 runs of 2 ranks resuming
from a hostile checkpoint are in tests/test_train_checkpointing_dcp.py.
"""

import dataclasses
import pickle
import re

import pytest
import torch
import torch.distributed.checkpoint as dcp

from cliplab.errors import UserError
from cliplab.pretrained.dcp_files import load_dcp, read_dcp_metadata
from cliplab.pretrained.dcp_reader import DcpModelReader
from hostile_files import RunsCode, store_instead

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled")


def _state():
    return {"model": {"weight": torch.arange(6.0).reshape(2, 3), "scale": torch.tensor([2.5])},
            "optimizer": {"state": {"weight": {"exp_avg": torch.ones(2, 3)}},
                          "param_groups": [{"lr": 0.25, "betas": (0.9, 0.98), "params": ["weight", "scale"]}]}}


def _empty_like(state):
    return {"model": {name: torch.zeros_like(value) for name, value in state["model"].items()},
            "optimizer": {"state": {"weight": {"exp_avg": torch.zeros(2, 3)}},
                          "param_groups": [{"lr": 0.0, "betas": (0.0, 0.0), "params": []}]}}


@pytest.fixture
def shards(tmp_path):
    directory = tmp_path / "shards"
    dcp.save(_state(), checkpoint_id=directory, no_dist=True)
    return directory


def _index(directory):
    with open(directory / ".metadata", "rb") as handle:
        return pickle.load(handle)  # the test's own, trusted file


def _rewrite_index(directory, metadata):
    with open(directory / ".metadata", "wb") as handle:
        pickle.dump(metadata, handle)


def _one_line(error):
    text = str(error.value)
    assert "\n" not in text
    return text


def test_a_genuine_directory_loads_every_tensor_and_value(shards):
    loaded = _empty_like(_state())
    load_dcp(loaded, shards, no_dist=True)
    expected = _state()
    assert all(torch.equal(loaded["model"][name], value) for name, value in expected["model"].items())
    assert torch.equal(loaded["optimizer"]["state"]["weight"]["exp_avg"], torch.ones(2, 3))
    assert loaded["optimizer"]["param_groups"][0]["lr"] == 0.25
    assert loaded["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.98)


@pytest.mark.parametrize("where", ["whole file", "inside the index"])
def test_a_code_running_index_runs_nothing(shards, tmp_path, where):
    marker = tmp_path / "ran"
    if where == "whole file":
        (shards / ".metadata").write_bytes(pickle.dumps(RunsCode(marker)))
    else:
        metadata = _index(shards)
        metadata.storage_meta.modules = [RunsCode(marker)]
        _rewrite_index(shards, metadata)
    for read in (lambda: read_dcp_metadata(shards), lambda: DcpModelReader(shards),
                 lambda: load_dcp(_empty_like(_state()), shards, no_dist=True)):
        with pytest.raises(UserError) as refused:
            read()
        assert _one_line(refused) == (f"{shards}/.metadata: not a DCP index cliplab reads (UnpicklingError: it names "
                                      "the global posix.system, which a DCP index does not hold)")
    assert not marker.exists()


def test_a_code_running_value_in_a_shard_file_runs_nothing(shards, tmp_path):
    marker = tmp_path / "ran"
    shard = store_instead(shards, "optimizer.param_groups.0.lr", marker)
    with pytest.raises(UserError) as refused:
        load_dcp(_empty_like(_state()), shards, no_dist=True)
    assert re.fullmatch(rf"{shard}: not a DCP shard file cliplab reads \(UnpicklingError: .*posix.system.*\)",
                        _one_line(refused))
    assert not marker.exists()
    reader = DcpModelReader(shards)  # a reader of the model never reads the optimiser's values
    assert torch.equal(reader.read("weight"), torch.arange(6.0).reshape(2, 3)) and not marker.exists()


def test_a_code_running_tensor_in_a_shard_file_runs_nothing(shards, tmp_path):
    marker = tmp_path / "ran"
    shard = store_instead(shards, "model.weight", marker)
    with pytest.raises(UserError) as refused:
        DcpModelReader(shards).read("weight")
    assert re.fullmatch(rf"{shard}: not a DCP shard file cliplab reads \(UnpicklingError: .*\)", _one_line(refused))
    assert not marker.exists()


def _edit(shards, fqn, **changes):
    metadata = _index(shards)
    key = next(key for key in metadata.storage_data if key.fqn == fqn)
    metadata.storage_data[key] = dataclasses.replace(metadata.storage_data[key], **changes)
    _rewrite_index(shards, metadata)


def _resize(shards, fqn, size, chunk_sizes=None):
    metadata = _index(shards)
    entry = metadata.state_dict_metadata[fqn]
    entry.size = torch.Size(size)
    if chunk_sizes is not None:
        entry.chunks[0].sizes = torch.Size(chunk_sizes)
    _rewrite_index(shards, metadata)


def _set_chunks(shards, fqn, chunks):
    metadata = _index(shards)
    metadata.state_dict_metadata[fqn].chunks = chunks
    _rewrite_index(shards, metadata)


@pytest.mark.parametrize("damage, message", [
    (lambda d: _edit(d, "model.weight", relative_path="../outside.distcp"),
     "{d}/.metadata: entry 'model.weight' is stored in '../outside.distcp', not a file of the directory"),
    (lambda d: _edit(d, "model.weight", relative_path="__7_0.distcp"),
     "{d}/.metadata: entry 'model.weight' is stored in __7_0.distcp, which {d} lacks"),
    (lambda d: _edit(d, "model.weight", length=10**12),
     "{d}/__0_0.distcp: does not hold entry 'model.weight' where its index .metadata says"),
    (lambda d: _edit(d, "model.scale", offset=_index(d).storage_data[
        next(k for k in _index(d).storage_data if k.fqn == "model.weight")].offset),
     "{d}/.metadata: two entries overlap in __0_0.distcp"),
    (lambda d: _resize(d, "model.weight", [10**6, 10**6], [10**6, 10**6]),
     "{d}/.metadata: entry 'model.weight' has a chunk at [0, 0] of 1000000000000 values that no stored range can "
     "hold"),
    (lambda d: _resize(d, "model.weight", [10**6, 10**6]),
     "{d}/.metadata: the chunks of entry 'model.weight' hold 6 values, its shape [1000000, 1000000] 1000000000000"),
    (lambda d: _resize(d, "model.weight", [1, 3]), "{d}/.metadata: entry 'model.weight' has a chunk outside its "
                                                   "shape [1, 3]"),
    (lambda d: _edit(d, "model.weight", transform_descriptors=["zstd"]),
     "{d}/.metadata: entry 'model.weight' is stored through DCP transforms ['zstd'], which cliplab does not read"),
    (lambda d: (d / ".metadata").write_bytes(pickle.dumps({"not": "an index"})),
     "{d}/.metadata: not a DCP index (it holds a dict)"),
    (lambda d: _rewrite_index(d, dataclasses.replace(_index(d), storage_meta="elsewhere")),
     "{d}/.metadata: not a DCP index (its state_dict_metadata, storage_data or storage_meta is not what DCP "
     "writes)"),
    (lambda d: _set_chunks(d, "model.weight", 5), "{d}/.metadata: not a DCP index cliplab reads (TypeError: "),
    (lambda d: (d / ".metadata").write_bytes(b"\x80\x05garbage"), "{d}/.metadata: not a DCP index cliplab reads"),
])
def test_an_index_that_does_not_fit_its_files_is_refused_before_any_allocation(shards, damage, message):
    damage(shards)
    with pytest.raises(UserError) as refused:
        DcpModelReader(shards)
    assert _one_line(refused).startswith(message.format(d=shards))

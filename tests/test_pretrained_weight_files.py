"""Hostile safetensors headers and Hugging Face indexes: one UserError line naming the file (and the
tensor) before anything is allocated from them (RELIABILITY 19).

Before: `TypeError: pop expected at most 1 argument` (a header that is a list), `KeyError: 'shape'`,
a negative dimension from torch, and offsets past the end of the file that asked for a 10 TB buffer.
Every reader of safetensors in cliplab goes through `read_safetensors_header` (bundles, step
checkpoints, resume, open_clip and Hugging Face files), which the end of this module checks.
"""

import json
import re
import struct

import pytest
import torch
from safetensors.torch import save_file

import cliplab
from cliplab.errors import UserError
from cliplab.pretrained.weight_files import SafetensorsReader, read_safetensors_header, hf_index_source


def _write(path, header, data=b""):
    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def _entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


def test_a_genuine_file_reads_back_exactly(tmp_path):
    tensors = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.tensor([True, False]),
               "empty": torch.zeros(0, 5, dtype=torch.bfloat16), "scalar": torch.tensor(7, dtype=torch.int64)}
    save_file(tensors, str(tmp_path / "w.safetensors"), metadata={"format": "pt"})
    reader = SafetensorsReader(tmp_path / "w.safetensors")
    assert {name: (tuple(meta.shape), meta.dtype) for name, meta in reader.shapes.items()} == {
        name: (tuple(tensor.shape), tensor.dtype) for name, tensor in tensors.items()}
    for name, tensor in tensors.items():
        assert torch.equal(reader.read(name), tensor), name


@pytest.mark.parametrize("header, data, message", [
    ([1, 2], b"", "its header is a JSON list, not an object"),
    ({"w": {"dtype": "F32", "data_offsets": [0, 8]}}, b"\0" * 8,
     "tensor 'w' is described by ['data_offsets', 'dtype'], expected ['data_offsets', 'dtype', 'shape']"),
    ({"w": [1, 2]}, b"", "tensor 'w' is described by list"),
    ({"w": _entry(dtype="F8_E4M3")}, b"\0" * 8, "tensor 'w' has dtype 'F8_E4M3', which cliplab does not read"),
    ({"w": _entry(dtype=["F32"])}, b"\0" * 8, "tensor 'w' has dtype ['F32']"),
    ({"w": _entry(shape=(-2,), offsets=(0, 0))}, b"", "tensor 'w' has shape [-2], expected a list of non-negative"),
    ({"w": _entry(shape=(2.0,))}, b"\0" * 8, "tensor 'w' has shape [2.0]"),
    ({"w": _entry(shape=(0, 2**40, 2**40))}, b"", "fewer than 2**63 values"),
    ({"w": _entry(shape=(2**20, 2**20), offsets=(0, 2**42))}, b"\0" * 8,  # 4 TiB past the end
     "tensor 'w' has data_offsets [0, 4398046511104], expected [begin, end] within the 8 bytes of data"),
    ({"w": _entry(offsets=(8, 0))}, b"\0" * 8, "data_offsets [8, 0]"),
    ({"w": _entry(offsets=(0, 4))}, b"\0" * 8, "tensor 'w' of shape [2] and dtype F32 takes 8 bytes, its "
                                               "data_offsets 4"),
    ({"w": _entry(offsets=(0,))}, b"\0" * 8, "data_offsets [0]"),
    ({"a": _entry(offsets=(0, 8)), "b": _entry(offsets=(4, 12))}, b"\0" * 12,
     "tensors 'a' and 'b' overlap in the data section"),
    ({"__metadata__": {"format": 1}, "w": _entry()}, b"\0" * 8, "its __metadata__ must map strings to strings"),
    ({"__metadata__": ["pt"]}, b"", "its __metadata__ must map strings to strings"),
    (b'{"w": {}, "w": {}}', b"", "duplicate key 'w'"),
    (b"[" * 100000 + b"]" * 100000, b"", "not a readable safetensors file"),
    (b"\xff\xfe", b"", "not a readable safetensors file"),
])
def test_each_hostile_header_is_one_line_naming_file_and_tensor(tmp_path, header, data, message):
    path = _write(tmp_path / "w.safetensors", header, data)
    with pytest.raises(UserError, match=re.escape(message)) as refused:
        SafetensorsReader(path)
    assert str(refused.value).startswith(f"{path}: ") and "\n" not in str(refused.value)


def test_a_header_longer_than_the_file_is_refused_before_reading_it(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", 10**13) + b"{}")  # 10 TB of header announced
    with pytest.raises(UserError, match="a header of 10000000000000 bytes in a file of 10"):
        read_safetensors_header(path)


def _index(directory, weight_map):
    path = directory / "model.safetensors.index.json"
    path.write_text(json.dumps(weight_map if not isinstance(weight_map, dict) or "weight_map" in weight_map
                               else {"weight_map": weight_map}))
    return path


def test_a_sharded_checkpoint_reads_each_tensor_from_its_shard(tmp_path):
    save_file({"a": torch.ones(2)}, str(tmp_path / "one.safetensors"))
    save_file({"b": torch.zeros(3)}, str(tmp_path / "two.safetensors"))
    shapes, read = hf_index_source(_index(tmp_path, {"a": "one.safetensors", "b": "two.safetensors"}))
    assert {name: list(meta.shape) for name, meta in shapes.items()} == {"a": [2], "b": [3]}
    assert torch.equal(read("a"), torch.ones(2)) and torch.equal(read("b"), torch.zeros(3))


@pytest.mark.parametrize("weight_map, message", [
    ([1], "expected a JSON object with a 'weight_map'"),
    ({"weight_map": ["a"]}, "expected a JSON object with a 'weight_map'"),
    ({"a": 3}, "tensor 'a' is mapped to 3, not the name of a shard file in the same directory"),
    ({"a": "../one.safetensors"}, "tensor 'a' is mapped to '../one.safetensors'"),
    ({"a": "/etc/passwd"}, "tensor 'a' is mapped to '/etc/passwd'"),
    ({"a": "missing.safetensors"}, "names shard missing.safetensors, which is not in"),
    ({"a": "one.safetensors", "b": "one.safetensors"}, "shard one.safetensors lacks 1 of the tensors the index "
                                                       "assigns to it, e.g. ['b']"),
])
def test_each_hostile_index_is_one_line_naming_it(tmp_path, weight_map, message):
    save_file({"a": torch.ones(2)}, str(tmp_path / "one.safetensors"))
    path = _index(tmp_path, weight_map)
    with pytest.raises(UserError, match=re.escape(message)) as refused:
        hf_index_source(path)
    assert str(path) in str(refused.value) and "\n" not in str(refused.value)


def test_every_reader_of_cliplab_files_checks_the_header(tmp_path, monkeypatch):
    """A bundle, a step directory resumed, and open_clip / Hugging Face weight files all read their
    safetensors through read_safetensors_header."""
    import cliplab.pretrained.weight_files as weight_files
    from cliplab.models import create_model
    from cliplab.train.checkpointing.manager import CheckpointManager, restore_training_state
    from cliplab.data.tokenizer import Tokenizer
    from cliplab.train.state import TrainState

    checked = []
    real = weight_files.read_safetensors_header
    monkeypatch.setattr(weight_files, "read_safetensors_header", lambda path: checked.append(path.name) or real(path))
    torch.manual_seed(0)
    model = create_model("tiny", **{"vision.width": 16, "text.width": 16, "text.heads": 2, "text.vocab_size": 300})
    tokenizer = Tokenizer.train(["a photo of a bag", "a boot"] * 5, vocab_size=300,
                                context_length=model.config.text.context_length)
    step = CheckpointManager(tmp_path / "checkpoints", keep=1).save(
        model=model, tokenizer=tokenizer, optimizer=torch.optim.AdamW(model.parameters()), scaler=None,
        state=TrainState(step=1), config={})
    cliplab.load(tmp_path)
    restore_training_state(step, model=model)
    assert checked == ["model.safetensors", "model.safetensors"]

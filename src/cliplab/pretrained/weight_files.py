"""Reading tensors from the files checkpoints come in, without running anything they contain.

- `.safetensors`: `SafetensorsReader`, which reads one tensor at a time with plain file reads into
  fresh (aligned) memory: loading then holds the model plus one tensor, where a memory map would
  keep every page it touched resident (and hand out tensors at offsets that are not 64-byte
  aligned, on which CPU kernels round differently).
- PyTorch zip/pickle files (`.bin`, `.pt`, `.pth`): `torch.load(weights_only=True)`, memory-mapped
  where the file allows it.
- TorchScript archives (OpenAI's CLIP `.pt`): `torch.jit.load`, whose state dict is all that is kept.
- Sharded Hugging Face weights: an index (`*.index.json`, its `weight_map`) and its shard files.
A `WeightSource` is (names -> tensors of the stored shapes, meta ones allowed; read(name)).
Every failure is a UserError naming the file.
"""

from __future__ import annotations

import json
import struct
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from cliplab.errors import UserError

TORCHSCRIPT_MARKER = "/code/"  # TorchScript archives hold the model's code; torch.save files do not


def is_torchscript(path: Path) -> bool:
    """True for a TorchScript archive (a zip with a code/ directory)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(TORCHSCRIPT_MARKER in name for name in archive.namelist())


def read_torch_file(path: Path) -> Any:
    """The object in a PyTorch file: a TorchScript archive's state dict, or what torch.load(weights_only)
    returns (tensors, dicts and plain values only)."""
    if is_torchscript(path):
        try:
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        except RuntimeError as error:
            raise UserError(f"{path}: a TorchScript archive that torch.jit.load cannot read: {error}") from error
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as error:  # pickle, zip and torch errors have no common base class
        raise UserError(f"{path}: not a PyTorch checkpoint that loads with weights_only=True "
                        f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from error


_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}
_HEADER_LIMIT = 100 * 2**20  # safetensors' own bound on the JSON header


class SafetensorsReader:
    """The tensors of a .safetensors file, read on demand. `shapes`: name -> a meta tensor of the
    stored shape and dtype (for checking names and shapes before reading any data); `read(name)`:
    the tensor, in freshly allocated memory."""

    def __init__(self, path: Path):
        self.path = path
        try:
            with open(path, "rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
                if length > _HEADER_LIMIT:
                    raise ValueError(f"header of {length} bytes")
                header = json.loads(handle.read(length))
        except (OSError, struct.error, ValueError, UnicodeDecodeError) as error:
            raise UserError(f"{path}: not a readable safetensors file ({error})") from error
        self._data_start = 8 + length
        header.pop("__metadata__", None)
        self._entries = {}
        for name, entry in header.items():
            dtype = _SAFETENSORS_DTYPES.get(entry.get("dtype"))
            if dtype is None:
                raise UserError(f"{path}: tensor {name!r} has dtype {entry.get('dtype')!r}, which cliplab does not read")
            self._entries[name] = (dtype, tuple(entry["shape"]), *entry["data_offsets"])
        self.shapes = {name: torch.empty(shape, dtype=dtype, device="meta")
                       for name, (dtype, shape, _, _) in self._entries.items()}

    def read(self, name: str) -> torch.Tensor:
        dtype, shape, start, end = self._entries[name]
        raw = torch.empty(end - start, dtype=torch.uint8)
        with open(self.path, "rb") as handle:
            handle.seek(self._data_start + start)
            if handle.readinto(raw.numpy()) != end - start:
                raise UserError(f"{self.path}: truncated inside tensor {name!r}")
        return raw.view(dtype).reshape(shape)

    def read_all(self) -> dict[str, torch.Tensor]:
        return {name: self.read(name) for name in self._entries}


def read_state_file(path: Path) -> Any:
    """A weights file of either kind, whole: safetensors by suffix, else a PyTorch file."""
    return SafetensorsReader(path).read_all() if path.suffix == ".safetensors" else read_torch_file(path)


WeightSource = tuple[Mapping[str, torch.Tensor], Callable[[str], torch.Tensor]]


def state_source(state: dict[str, torch.Tensor]) -> WeightSource:
    """A loaded state dict as a source: names/shapes, and a read that hands each tensor over once."""
    return dict(state), state.pop


def file_source(path: Path, unwrap: Callable[[Any], Any] = lambda values: values) -> WeightSource:
    """(names -> meta or real tensors, read(name)) of one weights file; safetensors are read one
    tensor at a time. unwrap: applied to a PyTorch file's object (e.g. a training checkpoint's
    'state_dict')."""
    if path.suffix == ".safetensors":
        reader = SafetensorsReader(path)
        return reader.shapes, reader.read
    return state_source(tensors_only(unwrap(read_torch_file(path)), path))


def sharded_source(index_path: Path) -> WeightSource:
    """The source of a sharded checkpoint: `index_path` is `*.index.json` with a `weight_map`
    (tensor name -> shard file in the same directory)."""
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise UserError(f"{index_path}: expected a JSON object with a 'weight_map' ({error})") from error
    shapes: dict[str, torch.Tensor] = {}
    readers: dict[str, Callable[[str], torch.Tensor]] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = index_path.parent / shard
        if not shard_path.is_file():
            raise UserError(f"{index_path} names shard {shard}, which is not in {index_path.parent}")
        shard_shapes, read = file_source(shard_path)
        shapes.update(shard_shapes)
        readers.update(dict.fromkeys(shard_shapes, read))
    missing = sorted(set(weight_map) - set(shapes))
    if missing:
        raise UserError(f"{index_path}: the shards lack {len(missing)} tensors the index lists, e.g. {missing[:3]}")
    return shapes, lambda name: readers[name](name)


def tensors_only(values: Mapping[str, Any], source: Path) -> dict[str, torch.Tensor]:
    """`values` as a state dict: UserError naming `source` and the first non-tensor entry."""
    if not isinstance(values, Mapping):
        raise UserError(f"{source}: expected a state dict (tensor names -> tensors), got {type(values).__name__}")
    for name, value in values.items():
        if not isinstance(value, torch.Tensor):
            raise UserError(f"{source}: entry {name!r} is a {type(value).__name__}, not a tensor")
    return dict(values)


def sample_keys(values: Mapping[str, Any], count: int = 5) -> str:
    """A few keys of a dict, for messages about unrecognised files."""
    keys = list(values)
    shown = ", ".join(repr(key) for key in keys[:count])
    return f"{shown}{', ...' if len(keys) > count else ''} ({len(keys)} entries)"

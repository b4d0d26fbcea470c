"""Reading tensors from the files checkpoints come in, without running anything they contain.

- `.safetensors`: `SafetensorsReader`, which reads one tensor at a time with plain file reads into
  fresh (aligned) memory: loading then holds the model plus one tensor, where a memory map would
  keep every page it touched resident (and hand out tensors at offsets that are not 64-byte
  aligned, on which CPU kernels round differently). Its header is checked whole first
  (`read_safetensors_header`): a hostile one is one line, before anything is allocated from it.
- PyTorch zip/pickle files (`.bin`, `.pt`, `.pth`): `torch.load(weights_only=True)`, memory-mapped
  where the file allows it.
- TorchScript archives (OpenAI's CLIP `.pt`): `torch.jit.load`, whose state dict is all that is
  kept. The exception to the title: it unpickles no Python globals and imports no Python code, but
  it compiles the archive's TorchScript and runs the `__setstate__` methods the archive defines
  (docs/pretrained.md says what to trust).
- Sharded Hugging Face weights: an index (`*.index.json`, its `weight_map` of plain shard file
  names) and its shard files.
A `WeightSource` is (names -> tensors of the stored shapes, meta ones allowed; read(name)).
Every failure is a UserError naming the file.
"""

from __future__ import annotations

import json
import math
import os
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
                        f"({load_failure(error)})") from error


def load_failure(error: Exception) -> str:
    """Why a (weights-only) torch.load failed, in one short line: torch's message spans many, with
    advice on weights_only before the cause and a link to its documentation after it."""
    text = str(error)
    marker = "WeightsUnpickler error: "
    if marker in text:
        text = text[text.index(marker) + len(marker):]
    paragraphs = [part.strip() for part in text.split("\n\n") if part.strip()]
    cause = [part for part in paragraphs
             if not part.startswith(("Weights only load failed", "Check the documentation"))]
    line = (cause or paragraphs or [""])[0].splitlines()[0]
    return f"{type(error).__name__}: {line.split('. ')[0].rstrip('.')}"


_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}
_HEADER_LIMIT = 100 * 2**20  # safetensors' own bound on the JSON header
_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}
_METADATA_KEY = "__metadata__"


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _json_object(data: bytes) -> Any:
    """JSON with duplicate keys refused (two entries of one name would otherwise keep the last)."""
    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"duplicate key {sorted(key for key in keys if keys.count(key) > 1)[0]!r}")
        return dict(pairs)
    return json.loads(data, object_pairs_hook=unique)


def read_safetensors_header(path: Path) -> tuple[int, dict[str, tuple[torch.dtype, tuple[int, ...], int, int]]]:
    """(where the data section starts, name -> (dtype, shape, begin, end)) of the safetensors file
    `path`, every entry checked before anything is allocated from it: the header is a JSON object
    of at most 100 MiB inside the file; each entry has exactly a known dtype, a shape of
    non-negative ints and data_offsets [begin, end] inside the data section, end - begin being the
    byte size of that shape and dtype, no two entries overlapping; `__metadata__` maps str to str.
    UserError in one line naming the file (and the tensor) otherwise."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > min(_HEADER_LIMIT, size - 8):
                raise ValueError(f"a header of {length} bytes in a file of {size}")
            header = _json_object(handle.read(length))
    except (OSError, struct.error, ValueError, UnicodeDecodeError, RecursionError) as error:
        raise UserError(f"{path}: not a readable safetensors file ({error})") from None
    if not isinstance(header, dict):
        raise UserError(f"{path}: not a safetensors file (its header is a JSON {type(header).__name__}, not an object)")
    metadata = header.pop(_METADATA_KEY, {})
    if not isinstance(metadata, dict) or not all(isinstance(key, str) and isinstance(value, str)
                                                 for key, value in metadata.items()):
        raise UserError(f"{path}: its {_METADATA_KEY} must map strings to strings")
    data_length = size - 8 - length
    entries = {name: _header_entry(path, name, entry, data_length) for name, entry in header.items()}
    spans = sorted((begin, end, name) for name, (_, _, begin, end) in entries.items() if end > begin)
    for (_, end, name), (begin, _, later) in zip(spans, spans[1:]):
        if begin < end:
            raise UserError(f"{path}: tensors {name!r} and {later!r} overlap in the data section")
    return 8 + length, entries


def _header_entry(path: Path, name: str, entry: Any, data_length: int) -> tuple[torch.dtype, tuple[int, ...], int, int]:
    """One header entry as (dtype, shape, begin, end), or UserError naming the file and tensor."""
    where = f"{path}: tensor {name!r}"
    if not isinstance(entry, dict) or set(entry) != _ENTRY_KEYS:
        keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise UserError(f"{where} is described by {keys}, expected {sorted(_ENTRY_KEYS)}")
    dtype = _SAFETENSORS_DTYPES.get(entry["dtype"]) if isinstance(entry["dtype"], str) else None
    if dtype is None:
        raise UserError(f"{where} has dtype {entry['dtype']!r}, which cliplab does not read "
                        f"({', '.join(_SAFETENSORS_DTYPES)})")
    shape, offsets = entry["shape"], entry["data_offsets"]
    if not isinstance(shape, list) or not all(_is_count(size) for size in shape) \
            or math.prod(max(size, 1) for size in shape) >= 2**63:
        raise UserError(f"{where} has shape {shape!r}, expected a list of non-negative ints (fewer than 2**63 "
                        "values)")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(offset) for offset in offsets) \
            or not offsets[0] <= offsets[1] <= data_length:
        raise UserError(f"{where} has data_offsets {offsets!r}, expected [begin, end] within the "
                        f"{data_length} bytes of data")
    begin, end = offsets
    if math.prod(shape) * dtype.itemsize != end - begin:
        raise UserError(f"{where} of shape {shape} and dtype {entry['dtype']} takes "
                        f"{math.prod(shape) * dtype.itemsize} bytes, its data_offsets {end - begin}")
    return dtype, tuple(shape), begin, end


class SafetensorsReader:
    """The tensors of a .safetensors file, read on demand. `shapes`: name -> a meta tensor of the
    stored shape and dtype (for checking names and shapes before reading any data); `read(name)`:
    the tensor, in freshly allocated memory. The header is checked in full when the reader is made
    (`read_safetensors_header`), so a hostile header fails before any allocation."""

    def __init__(self, path: Path):
        self.path = path
        self._data_start, self._entries = read_safetensors_header(path)
        self.shapes = {name: torch.empty(shape, dtype=dtype, device="meta")
                       for name, (dtype, shape, _, _) in self._entries.items()}

    def read(self, name: str) -> torch.Tensor:
        dtype, shape, start, end = self._entries[name]
        raw = torch.empty(end - start, dtype=torch.uint8)
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._data_start + start)
                complete = handle.readinto(raw.numpy()) == end - start
        except OSError as error:
            raise UserError(f"{self.path}: cannot be read ({error})") from None
        if not complete:
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


def hf_index_source(index_path: Path) -> WeightSource:
    """The source of a sharded checkpoint: `index_path` is `*.index.json` with a `weight_map`
    (tensor name -> the name of a shard file in the same directory). Each shard holds exactly the
    tensors the index assigns to it (its header checked as any safetensors header is)."""
    weight_map = read_weight_map(index_path)
    shapes: dict[str, torch.Tensor] = {}
    readers: dict[str, Callable[[str], torch.Tensor]] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = index_path.parent / shard
        if not shard_path.is_file():
            raise UserError(f"{index_path} names shard {shard}, which is not in {index_path.parent}")
        shard_shapes, read = file_source(shard_path)
        listed = {name for name, listed_shard in weight_map.items() if listed_shard == shard}
        if listed - shard_shapes.keys():
            raise UserError(f"{index_path}: shard {shard} lacks {len(listed - shard_shapes.keys())} of the tensors the "
                            f"index assigns to it, e.g. {sorted(listed - shard_shapes.keys())[:3]}")
        shapes.update({name: shard_shapes[name] for name in listed})
        readers.update(dict.fromkeys(listed, read))
    return shapes, lambda name: readers[name](name)


def read_weight_map(index_path: Path) -> dict[str, str]:
    """The `weight_map` of a Hugging Face `*.index.json`: tensor names -> plain file names of the same
    directory; UserError in one line naming the file otherwise."""
    try:
        index = _json_object(index_path.read_bytes())
    except (OSError, ValueError, RecursionError) as error:
        raise UserError(f"{index_path}: not a readable JSON index ({error})") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise UserError(f"{index_path}: expected a JSON object with a 'weight_map' of tensor names -> shard files")
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or shard in ("", ".", "..") or "/" in shard or "\\" in shard:
            raise UserError(f"{index_path}: tensor {name!r} is mapped to {shard!r}, not the name of a shard file "
                            "in the same directory")
    return weight_map


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

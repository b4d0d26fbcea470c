"""Reading torch.distributed.checkpoint (DCP) directories without running anything they contain.

A DCP directory is `.metadata` (the index: every entry's shape, dtype, chunks and where each chunk
is stored) and one `__<rank>_0.distcp` file per writing rank. torch reads the index with plain
`pickle.load` (`FileSystemReader.read_metadata`) and the non-tensor values stored in the shard
files (an optimiser's param groups) with `torch.load(weights_only=False)`
(`DefaultLoadPlanner.load_bytes`): a crafted file runs whatever it asks, and the load then goes on
normally. `load_dcp` reads a directory instead through:

- `MetadataUnpickler`: `.metadata` may construct only what a DCP index is made of (`_allowed_globals`:
  the records of `torch.distributed.checkpoint.metadata` and `filesystem._StorageInfo`,
  `torch.Size`, torch dtypes and layouts, pathlib paths); any other global is refused before it is
  called, so a `__reduce__` payload fails without running;
- `check_index`: every storage entry names a shard file of the directory by a plain name, at a
  range inside that file, ranges never overlapping; every tensor's chunks lie inside its shape.
  So nothing outside the directory is read, and what the index declares is bounded by the files'
  sizes before anything is allocated from it;
- `SafeLoadPlanner`: the values pickled in the shard files load with `torch.load(weights_only=True)`
  (the tensors DCP already loads that way);
- every failure is one `UserError` line naming the file (DCP wraps its readers' failures in a
  `CheckpointException` carrying every rank's traceback; `load_dcp` unwraps it, on every rank alike).

Why a restricted unpickler rather than an index file cliplab writes beside the shards: DCP plans a
load from the `Metadata` object itself (each chunk's offsets and storage location), so a file of
our own would have to rebuild that object in full, re-deriving DCP's private records
(`_StorageInfo`, `MetadataIndex`) and following their changes across torch versions, and every
checkpoint written so far would need converting. Limiting what `.metadata` may construct keeps
DCP's own file, reads every existing checkpoint, and admits nothing a DCP index does not hold.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import math
import pathlib
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed import ProcessGroup
from torch.distributed.checkpoint import FileSystemReader, metadata as dcp_metadata
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.filesystem import _StorageInfo
from torch.distributed.checkpoint.metadata import (BytesStorageMetadata, ChunkStorageMetadata, Metadata, MetadataIndex,
                                                   StorageMeta, TensorStorageMetadata)
from torch.distributed.checkpoint.planner import LoadPlan, LoadPlanner, ReadItem
from torch.futures import Future

from cliplab.errors import UserError
from cliplab.file_names import DCP_METADATA_FILE
from cliplab.pretrained.weight_files import load_failure

_INDEX_RECORDS = ("Metadata", "TensorStorageMetadata", "BytesStorageMetadata", "ChunkStorageMetadata",
                  "TensorProperties", "MetadataIndex", "StorageMeta", "_MEM_FORMAT_ENCODING")


@functools.cache
def _allowed_globals() -> dict[tuple[str, str], Any]:
    """(module, name) -> object, for every global a DCP index pickles."""
    allowed: dict[tuple[str, str], Any] = {
        ("torch.distributed.checkpoint.metadata", name): getattr(dcp_metadata, name) for name in _INDEX_RECORDS}
    allowed[("torch.distributed.checkpoint.filesystem", "_StorageInfo")] = _StorageInfo
    allowed[("torch", "Size")] = torch.Size
    allowed[("torch.serialization", "_get_layout")] = torch.serialization._get_layout  # a lookup of layouts by name
    allowed[("collections", "OrderedDict")] = OrderedDict
    allowed.update({("torch", name): value for name, value in vars(torch).items() if isinstance(value, torch.dtype)})
    for module in ("pathlib", "pathlib._local"):  # the checkpoint id DCP records (informative only)
        allowed.update({(module, "PosixPath"): pathlib.PurePosixPath, (module, "PurePosixPath"): pathlib.PurePosixPath,
                        (module, "WindowsPath"): pathlib.PureWindowsPath,
                        (module, "PureWindowsPath"): pathlib.PureWindowsPath})
    return allowed


class MetadataUnpickler(pickle.Unpickler):
    """An unpickler that constructs only the globals of a DCP index (`_allowed_globals`)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _allowed_globals()[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"it names the global {module}.{name}, which a DCP index does not "
                                         "hold") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("it holds a persistent id, which a DCP index does not")


def read_dcp_metadata(directory: Path) -> Metadata:
    """The index `.metadata` of the DCP directory `directory`, checked against its files
    (`check_index`); UserError in one line naming the file when it is anything else."""
    path = directory / DCP_METADATA_FILE
    try:
        with open(path, "rb") as handle:
            metadata = MetadataUnpickler(handle).load()
    except OSError as error:
        raise UserError(f"{path}: cannot be read ({error})") from None
    except Exception as error:  # a damaged or hostile pickle fails in many ways
        raise UserError(f"{path}: not a DCP index cliplab reads ({type(error).__name__}: {_first_line(error)})") \
            from None
    if not isinstance(metadata, Metadata):
        raise UserError(f"{path}: not a DCP index (it holds a {type(metadata).__name__})")
    try:
        check_index(metadata, directory)
    except UserError:
        raise
    except Exception as error:  # records of the allowed classes, assembled otherwise than DCP does
        raise UserError(f"{path}: not a DCP index cliplab reads ({type(error).__name__}: {_first_line(error)})") \
            from None
    return metadata


def check_index(metadata: Metadata, directory: Path) -> None:
    """UserError naming `.metadata` unless every storage entry is a non-overlapping range inside a
    shard file of `directory` (named plainly, stored without transforms) and every tensor entry's
    chunks make up its shape, each in a range that can hold it."""
    path = directory / DCP_METADATA_FILE
    ranges: dict[str, list[tuple[int, int]]] = {}
    if not isinstance(metadata.storage_data, dict) or not isinstance(metadata.state_dict_metadata, dict) \
            or not isinstance(metadata.storage_meta, (StorageMeta, type(None))):
        raise UserError(f"{path}: not a DCP index (its state_dict_metadata, storage_data or storage_meta is not "
                        "what DCP writes)")
    for index, info in metadata.storage_data.items():
        fqn = getattr(index, "fqn", index)
        name = getattr(info, "relative_path", None)
        if not isinstance(info, _StorageInfo) or not _is_plain_name(name):
            raise UserError(f"{path}: entry {fqn!r} is stored in {name!r}, not a file of the directory")
        if not (directory / name).is_file():
            raise UserError(f"{path}: entry {fqn!r} is stored in {name}, which {directory} lacks")
        if getattr(info, "transform_descriptors", None):  # compression and the like, which cliplab never writes
            raise UserError(f"{path}: entry {fqn!r} is stored through DCP transforms "
                            f"{info.transform_descriptors!r}, which cliplab does not read")
        if not _is_count(info.offset) or not _is_count(info.length) \
                or info.offset + info.length > (directory / name).stat().st_size:
            raise UserError(f"{directory / name}: does not hold entry {fqn!r} where its index {path.name} "
                            f"says (offset {info.offset!r}, length {info.length!r}, file of "
                            f"{(directory / name).stat().st_size} bytes)")
        ranges.setdefault(name, []).append((info.offset, info.offset + info.length))
    for name, spans in ranges.items():
        spans.sort()
        if any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])):
            raise UserError(f"{path}: two entries overlap in {name}")
    for key, entry in metadata.state_dict_metadata.items():
        if isinstance(entry, TensorStorageMetadata):
            _check_tensor_entry(path, key, entry, metadata.storage_data)
        elif not isinstance(entry, BytesStorageMetadata):
            raise UserError(f"{path}: entry {key!r} is a {type(entry).__name__}, not a tensor or bytes entry")


def _check_tensor_entry(path: Path, key: str, entry: TensorStorageMetadata, storage: dict) -> None:
    """The chunks of a tensor entry make up its shape, and each is stored in a range that can hold
    it: what the entry declares is then at most what the shard files hold."""
    shape = tuple(entry.size) if isinstance(entry.size, (tuple, list)) else None
    dtype = getattr(entry.properties, "dtype", None)
    if shape is None or not all(_is_count(size) for size in shape) or not isinstance(dtype, torch.dtype):
        raise UserError(f"{path}: entry {key!r} has shape {entry.size!r}, expected non-negative ints and a dtype")
    covered = 0
    for chunk in entry.chunks:
        if not isinstance(chunk, ChunkStorageMetadata) or len(chunk.offsets) != len(shape) \
                or len(chunk.sizes) != len(shape) \
                or not all(_is_count(offset) and _is_count(size) and offset + size <= whole
                           for offset, size, whole in zip(chunk.offsets, chunk.sizes, shape)):
            raise UserError(f"{path}: entry {key!r} has a chunk outside its shape {list(shape)}")
        count = math.prod(chunk.sizes)
        stored = storage.get(MetadataIndex(key, chunk.offsets))
        if stored is None or stored.length < count * dtype.itemsize:
            raise UserError(f"{path}: entry {key!r} has a chunk at {list(chunk.offsets)} of {count} values that "
                            "no stored range can hold")
        covered += count
    if covered != math.prod(shape):
        raise UserError(f"{path}: the chunks of entry {key!r} hold {covered} values, its shape {list(shape)} "
                        f"{math.prod(shape)}")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_plain_name(name: Any) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


class SafeDcpReader(FileSystemReader):
    """DCP's file reader with the index read by `read_dcp_metadata` (once) and each shard file's
    failures reported as one UserError line naming it."""

    def __init__(self, directory: Path):
        super().__init__(directory)
        self.directory = Path(directory)
        self._metadata: Metadata | None = None

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        if self._metadata is None:
            self._metadata = read_dcp_metadata(self.directory)
        if getattr(self._metadata, "storage_meta", None) is None:
            self._metadata.storage_meta = StorageMeta()
        self._metadata.storage_meta.load_id = self.load_id  # as FileSystemReader.read_metadata does
        return self._metadata

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> Future[None]:
        per_file: dict[str, list[ReadItem]] = {}
        for item in plan.items:
            per_file.setdefault(self.storage_data[item.storage_index].relative_path, []).append(item)
        for name, items in per_file.items():
            try:
                super().read_data(dataclasses.replace(plan, items=items), planner).wait()
            except UserError:
                raise
            except Exception as error:  # torch, pickle and zip errors have no common base class
                raise UserError(f"{self.directory / name}: not a DCP shard file cliplab reads "
                                f"({load_failure(error)})") from None
        done: Future[None] = Future()
        done.set_result(None)
        return done


class SafeLoadPlanner(DefaultLoadPlanner):
    """DCP's load planner with pickled values loaded by `torch.load(weights_only=True)`."""

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        loaded = torch.load(value, weights_only=True)
        # DefaultLoadPlanner.load_bytes places the value where it belongs, loading it with
        # weights_only=False: given the bytes of this already-restricted value, it constructs
        # nothing else.
        checked = io.BytesIO()
        torch.save(loaded, checked)
        checked.seek(0)
        super().load_bytes(read_item, checked)


def load_dcp(state: dict[str, Any], directory: Path, *, process_group: ProcessGroup | None = None,
             no_dist: bool = False) -> None:
    """`dcp.load(state)` from `directory` (see the module docstring); a collective under a process
    group unless `no_dist`. Every rank reads the same index first, so a bad one fails every rank in
    the same line before any collective; a failure inside DCP is raised on every rank as one
    UserError line (the lowest failing rank's)."""
    reader = SafeDcpReader(directory)
    reader.read_metadata()
    try:
        dcp.load(state, storage_reader=reader, planner=SafeLoadPlanner(), process_group=process_group,
                 no_dist=no_dist)
    except CheckpointException as error:
        raise _one_line(error, directory) from None


def _one_line(error: CheckpointException, directory: Path) -> UserError:
    """The lowest failing rank's error as a UserError (itself when it is one)."""
    failures = error.failures
    cause = failures[min(failures)][0] if failures else error
    if isinstance(cause, UserError):
        return cause
    return UserError(f"{directory}: DCP could not load it ({type(cause).__name__}: {_first_line(cause)})")

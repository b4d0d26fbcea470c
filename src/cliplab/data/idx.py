"""Reader for the IDX format of (Fashion-)MNIST, gzip-compressed or not, with validation.

Layout: two zero bytes, a dtype code, the number of dimensions D, then D big-endian uint32 sizes,
then the values big-endian in C order.
"""

from __future__ import annotations

import functools
import gzip
import zlib
from pathlib import Path

import numpy as np

from cliplab.errors import InvalidInputError, MissingInputError

_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IdxFormatError(InvalidInputError):
    """An IDX file that is truncated, corrupt or not IDX at all; the message names the file."""


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in the IDX file at `path` (`.gz` is decompressed), read-only, native order.

    Repeated reads of an unchanged file return the same cached array, so rebuilding a dataset each
    epoch costs nothing.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise MissingInputError(f"IDX file {path} does not exist") from None
    return _read_idx_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _read_idx_cached(path: str, mtime_ns: int, size: int) -> np.ndarray:
    del mtime_ns, size  # part of the cache key only: a rewritten file is read again
    raw = _read_bytes(Path(path))
    if len(raw) < 4:
        raise IdxFormatError(f"{path}: {len(raw)} bytes is too short for an IDX header (4 bytes)")
    if raw[0] != 0 or raw[1] != 0:
        raise IdxFormatError(f"{path}: bad magic number {raw[:4].hex()}: an IDX file starts with two "
                             "zero bytes")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code not in _DTYPES:
        raise IdxFormatError(f"{path}: unknown IDX dtype code 0x{dtype_code:02x}; expected one of "
                             f"{sorted(hex(code) for code in _DTYPES)}")
    if ndim == 0:
        raise IdxFormatError(f"{path}: IDX header declares 0 dimensions")
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise IdxFormatError(f"{path}: truncated header: {ndim} dimensions need {header_size} bytes, "
                             f"file holds {len(raw)}")
    shape = tuple(int(size) for size in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _DTYPES[dtype_code]
    expected_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    payload_bytes = len(raw) - header_size
    if payload_bytes != expected_bytes:
        problem = "truncated" if payload_bytes < expected_bytes else "has trailing bytes"
        raise IdxFormatError(f"{path}: {problem}: header declares shape {shape} of {dtype.name} "
                             f"({expected_bytes} bytes of data), file holds {payload_bytes}")
    array = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape)
    array = array.astype(dtype.newbyteorder("="), copy=False)
    array.setflags(write=False)
    return array


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as handle:
        is_gzip = handle.read(2) == b"\x1f\x8b"
    if not is_gzip:
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read()
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as error:
        raise IdxFormatError(f"{path}: corrupt or truncated gzip stream ({error})") from None


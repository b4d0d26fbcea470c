"""Writing the files of a run so that a kill or a full disk never leaves a half-written one behind.

`write_text_atomic` replaces a file so that a reader sees the old or the new content, never a mix;
`save_torch` is `torch.save` that reports the OSError of a failed write (torch turns it into a
RuntimeError such as "unexpected pos 576 vs 534"); `fsync_path` / `fsync_tree` make what was
written durable before it is renamed into place. `out_of_space` tells a full disk (ENOSPC, a
quota) from other failures, and `NoSpaceError` is the one-line report of it: the path, about how
many bytes the write needed, and how many are free there.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from cliplab.errors import UserError

TMP_PREFIX = ".tmp-"
_OUT_OF_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_OUT_OF_SPACE_TEXT = ("No space left on device", "os error 28", "Disk quota exceeded")


class NoSpaceError(UserError):
    """A write that failed because the device (or the user's quota) is full."""

    def __init__(self, path: str | Path, needed_bytes: int, free_bytes: int, consequence: str = ""):
        self.path, self.needed_bytes, self.free_bytes, self.consequence = str(path), needed_bytes, free_bytes, consequence
        super().__init__(f"no space left on device writing {path}: it needs about {format_bytes(needed_bytes)}, "
                         f"{format_bytes(free_bytes)} free there{consequence}")

    def __reduce__(self):
        return type(self), (self.path, self.needed_bytes, self.free_bytes, self.consequence)


def format_bytes(count: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} bytes"


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem of `path` (or of its nearest existing parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def out_of_space(error: BaseException) -> bool:
    """Whether `error` (or an error it was raised from) is a full device or an exceeded quota."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _OUT_OF_SPACE_ERRNOS:
            return True
        if any(text in str(error) for text in _OUT_OF_SPACE_TEXT):  # safetensors' SafetensorError
            return True
        error = error.__cause__ or error.__context__
    return False


def raise_if_out_of_space(error: BaseException, path: str | Path, needed_bytes: int, consequence: str = "") -> None:
    """NoSpaceError (from `error`) when `error` is a full disk; otherwise return."""
    if out_of_space(error):
        raise NoSpaceError(path, needed_bytes, free_bytes(Path(path).parent), consequence) from error


def tensor_bytes(value: Any) -> int:
    """Bytes held by the tensors inside `value` (nested dicts, lists and tuples)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(tensor_bytes(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(item) for item in value)
    return 0


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(directory: Path) -> None:
    for root, _, files in os.walk(directory):
        for name in files:
            fsync_path(Path(root) / name)
        fsync_path(Path(root))


def write_text_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` so that a reader sees the old or the new content, never a mix; on
    failure the temporary file is removed and `path` is left as it was (NoSpaceError on a full disk)."""
    tmp_path = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
    data = text.encode("utf-8")
    try:
        with open(tmp_path, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException as error:
        tmp_path.unlink(missing_ok=True)
        raise_if_out_of_space(error, path, len(data))
        raise
    fsync_path(path.parent)


class _WriteErrorRecorder:
    """A binary file wrapper that keeps the OSError of a failed write."""

    def __init__(self, handle):
        self.handle, self.error = handle, None

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.handle.flush()


def save_torch(value: Any, path: Path) -> None:
    """torch.save(value, path), raising the OSError of a failed write (ENOSPC, say) rather than
    torch's RuntimeError without a cause."""
    with open(path, "wb") as handle:
        recorder = _WriteErrorRecorder(handle)
        try:
            torch.save(value, recorder)
        except RuntimeError as error:
            if recorder.error is not None:
                raise recorder.error from error
            raise

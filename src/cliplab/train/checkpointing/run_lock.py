"""One run per directory: an exclusive lock on `<run>/run.lock`, held by the run's main process.

The lock is a POSIX record lock (`fcntl.lockf`, i.e. fcntl F_SETLK) on the whole file. The kernel
drops it when the holding process ends, however it ends (SIGKILL included), so a lock is never
stale. Not flock: a flock lock belongs to the open file, which forked data-loader workers share, so
after a SIGKILL of the main process the workers would keep the directory locked until they notice
their parent is gone; a record lock belongs to the process and is not inherited by fork. Record
locks also work on NFS (through its lock manager). Their one trap: closing any descriptor of the
file releases the process's lock, so this module opens the file once per process (a second
`acquire` of a path this process holds is refused without opening it).

The file holds the holder's pid and host name, so that a refused run can say who holds it; it is
left in place when the run ends (removing it would let two processes lock two different files).
On a filesystem that cannot lock (ENOLCK, EOPNOTSUPP), the run says so and goes on unlocked.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path

from cliplab.errors import UserError
from cliplab.eval.run_layout import LOCK_FILE

_HELD: dict[str, "RunLock"] = {}  # lock files this process holds, by resolved path
_CANNOT_LOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS)


class RunDirectoryInUseError(UserError):
    """Another live process holds the run directory's lock."""


class RunLock:
    """The held lock of one run directory (`acquire`); `release()` gives it up (idempotent)."""

    def __init__(self, path: Path, fd: int | None):
        self.path, self._fd, self._key = path, fd, str(path.resolve())

    @classmethod
    def acquire(cls, run_dir: Path) -> "RunLock":
        """Lock `run_dir` (which must exist) for this process; RunDirectoryInUseError naming the
        holder's pid when another process holds it."""
        path = run_dir / LOCK_FILE
        key = str(path.resolve())
        if key in _HELD:
            raise RunDirectoryInUseError(cls._in_use_message(run_dir, f"pid {os.getpid()} (this process)"))
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EACCES, errno.EAGAIN):
                raise RunDirectoryInUseError(cls._in_use_message(run_dir, _holder(path))) from None
            if error.errno in _CANNOT_LOCK:
                print(f"note: cannot lock {path} on this filesystem ({error.strerror}): nothing stops a second "
                      "run from using this run directory at the same time")
                return cls(path, None)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        lock = cls(path, fd)
        _HELD[key] = lock
        return lock

    @staticmethod
    def _in_use_message(run_dir: Path, holder: str) -> str:
        return (f"run directory {run_dir} is in use by another cliplab train ({holder}); wait for it to end, "
                "or choose another --name")

    def release(self) -> None:
        if self._fd is None:
            return
        _HELD.pop(self._key, None)
        os.close(self._fd)  # closing the descriptor drops the lock
        self._fd = None


def _holder(path: Path) -> str:
    """"pid N on host H" from the lock file, as the holder wrote it."""
    try:
        pid, _, host = path.read_text(encoding="utf-8").strip().partition(" ")
    except (OSError, UnicodeDecodeError):
        pid, host = "", ""
    if not pid.isdigit():
        return "pid unknown: it has not written it yet"
    return f"pid {pid}" + (f" on host {host}" if host else "")

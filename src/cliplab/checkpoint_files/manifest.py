"""Checkpoint manifests: the sizes and SHA-256 checksums of every file of a checkpoint directory.

A checkpoint directory is complete when its `manifest.json` lists every other file in it (at any
depth) with the size and checksum the file has now. The manifest is the last file a writer adds,
so a directory whose writer was interrupted has none; a file that was truncated, deleted, replaced
or had a byte flipped afterwards no longer matches it. `verify_checkpoint(directory)` is a pure
function of the directory's content, whoever wrote the files: one process writing a bundle and
`train_state.pt`, or every rank writing its shards of a DCP checkpoint into the same directory
(the manifest is then written over all of them once every rank has finished).

manifest.json:
    {"format": "cliplab-checkpoint", "version": 1, "step": 150, "run_id": "<hex>",
     "files": {"model.safetensors": {"size": 1234, "sha256": "<hex>"}, ...}}
`files` maps POSIX paths relative to the directory to their size in bytes and SHA-256 (hex).
`run_id` names the run that wrote the checkpoint (its run directory's id), so that pruning only
ever removes checkpoints the run wrote itself.

A manifest proves a checkpoint complete and undamaged, not trustworthy: anyone who can write the
directory can recompute it. What keeps a hostile file from running code is the readers
(`cliplab.train.checkpointing.payload`, `cliplab.pretrained.dcp_files`, `cliplab.pretrained.weight_files`).

Readers race the run that writes the directory: it prunes old checkpoints (and replaces one of the
same step) while others read them. A file that disappears while it is verified makes the checkpoint
fail verification ("lost ... while it was verified"), never raise an OSError; and
`verified_checkpoint` returns, with the manifest, the identity (device, inode, size, mtime) each
file had when it was hashed, so that a reader can tell afterwards whether it read those very files
(`VerifiedCheckpoint.unchanged`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cliplab.errors import UserError

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "cliplab-checkpoint"
MANIFEST_VERSION = 1
_STEP_DIR = re.compile(r"step_(\d+)")


class UnverifiedCheckpointError(UserError):
    """A checkpoint directory that its manifest does not prove complete and intact."""

    def __init__(self, directory: str | Path, reason: str):
        self.directory, self.reason = str(directory), reason
        super().__init__(f"checkpoint {directory} {reason}")

    def __reduce__(self):
        return type(self), (self.directory, self.reason)


@dataclass(frozen=True)
class FileRecord:
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What a checkpoint directory held when its writer finished: step, writer's run id, files."""

    step: int
    run_id: str | None
    files: dict[str, FileRecord]

    @property
    def total_bytes(self) -> int:
        return sum(record.size for record in self.files.values())

    def to_json(self) -> str:
        return json.dumps({"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "step": self.step,
                           "run_id": self.run_id,
                           "files": {name: {"size": record.size, "sha256": record.sha256}
                                     for name, record in sorted(self.files.items())}}, indent=1) + "\n"


def sha256_of(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def checkpoint_files(directory: Path) -> list[str]:
    """Every file under `directory` but the manifest, as sorted POSIX paths relative to it."""
    return sorted(path.relative_to(directory).as_posix() for path in directory.rglob("*")
                  if path.is_file() and path.relative_to(directory).as_posix() != MANIFEST_FILE)


def build_manifest(directory: Path, *, step: int, run_id: str | None) -> Manifest:
    """The manifest of `directory` as it is now (reads every file once)."""
    return Manifest(step=step, run_id=run_id, files={
        name: FileRecord(size=(directory / name).stat().st_size, sha256=sha256_of(directory / name))
        for name in checkpoint_files(directory)})


def read_manifest(directory: Path) -> Manifest:
    """The manifest of `directory` as written; UnverifiedCheckpointError when missing or malformed.
    Checks nothing about the other files (`verify_checkpoint` does)."""
    path = directory / MANIFEST_FILE
    try:
        text = path.read_bytes() if path.is_file() else None
    except FileNotFoundError:
        text = None
    except OSError as error:
        raise UnverifiedCheckpointError(directory, f"has an unreadable {MANIFEST_FILE} ({type(error).__name__}: "
                                        f"{error})") from None
    if text is None:
        raise UnverifiedCheckpointError(directory, f"has no {MANIFEST_FILE}: its writer did not finish, or "
                                        "a cliplab without checkpoint manifests wrote it")
    try:
        data = json.loads(text.decode("utf-8"))
        if data.get("format") != MANIFEST_FORMAT or data.get("version") != MANIFEST_VERSION:
            raise ValueError(f"format {data.get('format')!r} version {data.get('version')!r}")
        step, run_id, files = data["step"], data["run_id"], data["files"]
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise ValueError(f"step {step!r}")
        if run_id is not None and not isinstance(run_id, str):
            raise ValueError(f"run_id {run_id!r}")
        records = {}
        for name, entry in files.items():
            if not _is_inner_path(name):
                raise ValueError(f"file name {name!r}")
            size, digest = entry["size"], entry["sha256"]
            if not isinstance(size, int) or isinstance(size, bool) or not isinstance(digest, str):
                raise ValueError(f"entry of {name!r}")
            records[name] = FileRecord(size=size, sha256=digest)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise UnverifiedCheckpointError(directory, f"has an unreadable {MANIFEST_FILE} ({type(error).__name__}: "
                                        f"{error})") from None
    return Manifest(step=step, run_id=run_id, files=records)


def _is_inner_path(name: object) -> bool:
    if not isinstance(name, str) or name in ("", MANIFEST_FILE):
        return False
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts and "\\" not in name


FileIdentity = tuple[int, int, int, int]  # (st_dev, st_ino, st_size, st_mtime_ns)


def _identity(path: Path) -> FileIdentity:
    stat = path.stat()
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


@dataclass(frozen=True)
class VerifiedCheckpoint:
    """A checkpoint directory whose files matched its manifest, and each file's identity (device,
    inode, size, mtime) when it was hashed, the manifest's own included."""

    path: Path
    manifest: Manifest
    identities: dict[str, FileIdentity]

    def unchanged(self) -> bool:
        """Whether every file is still the one that was verified: none removed, replaced or rewritten
        since. A reader that finds this true after reading has read a whole verified checkpoint
        (cliplab never modifies a checkpoint file in place, it removes or replaces it)."""
        try:
            return all(_identity(self.path / name) == identity for name, identity in self.identities.items())
        except OSError:
            return False


def verify_checkpoint(directory: str | Path) -> Manifest:
    """The manifest of `directory` once every file matches it; else UnverifiedCheckpointError
    naming the first problem: no or an unreadable manifest, a step that is not the directory's, a
    file missing, of another size, with another checksum, or present but not listed, or a file that
    went away while it was read. Sizes are compared before any file is read, so a truncated or
    missing file is found without hashing."""
    return verified_checkpoint(directory).manifest


def verified_checkpoint(directory: str | Path) -> VerifiedCheckpoint:
    """`verify_checkpoint`, keeping the identity of every file it verified."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UnverifiedCheckpointError(directory, "is not a directory")
    try:
        return _verify(directory)
    except FileNotFoundError as error:  # removed while verified: pruned, or replaced by its run
        lost = Path(error.filename or "?")
        name = lost.relative_to(directory).as_posix() if lost.is_relative_to(directory) else str(lost)
        raise UnverifiedCheckpointError(directory, f"lost {name} while it was verified (removed meanwhile, e.g. "
                                        "pruned by the run writing it)") from None
    except OSError as error:
        raise UnverifiedCheckpointError(directory, f"could not be read ({type(error).__name__}: {error})") from None


def _verify(directory: Path) -> VerifiedCheckpoint:
    manifest = read_manifest(directory)
    named = _STEP_DIR.fullmatch(directory.name)
    if named and int(named.group(1)) != manifest.step:
        raise UnverifiedCheckpointError(directory, f"holds the manifest of step {manifest.step}")
    present = set(checkpoint_files(directory))
    identities = {MANIFEST_FILE: _identity(directory / MANIFEST_FILE)}
    for name, record in manifest.files.items():
        if name not in present:
            raise UnverifiedCheckpointError(directory, f"lacks {name}, which its manifest lists")
        identities[name] = _identity(directory / name)
        size = identities[name][2]
        if size != record.size:
            raise UnverifiedCheckpointError(directory, f"has {name} of {size} bytes, its manifest says "
                                            f"{record.size} (truncated or replaced)")
    unlisted = sorted(present - set(manifest.files))
    if unlisted:
        raise UnverifiedCheckpointError(directory, f"holds {unlisted[0]}, which its manifest does not list")
    for name, record in manifest.files.items():
        if sha256_of(directory / name) != record.sha256:
            raise UnverifiedCheckpointError(directory, f"has {name} with another SHA-256 than its manifest's "
                                            "(the file changed after it was written: corrupt)")
    return VerifiedCheckpoint(directory, manifest, identities)

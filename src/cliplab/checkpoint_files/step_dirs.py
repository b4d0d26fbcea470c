"""A run's `checkpoints/` directory, read: its step directories, its `latest` pointer, and which
checkpoint a reader takes.

    checkpoints/step_0000150/   one checkpoint; complete and intact when its manifest verifies
    checkpoints/latest          text naming the newest checkpoint written: "step_0000150\\n"
(written by `cliplab.train.checkpointing.manager.CheckpointManager`).

`read_pointer` is the one reader of `latest`. `newest_verified` is how every reader chooses:
resume (`CheckpointManager.find_resumable`) and every reader of a run directory (`cliplab.model_io`:
`cliplab.load`, eval, classify, embed, export, `--pretrained`) take the newest step directory
whose manifest verifies, whatever `latest` says, and hear one line per checkpoint skipped with the
reason. `latest` is read to say what is wrong with it, never trusted.

Readers race the run that writes the directory: it renames new checkpoints in, and prunes old ones
(every step, with `--save-every-steps 1 --keep-checkpoints 1`). So a checkpoint that fails
verification while the directory's listing changed is not reported as damaged: the listing is read
again (the run saved meanwhile, and pruned what was being verified). `read_whole` then reads the
chosen checkpoint and checks that its files are still the ones verified; when they are not (pruned
or replaced during the read) it chooses and reads again. A reader thus reads one whole verified
checkpoint or tries the next one, and fails only with one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from cliplab.checkpoint_files.manifest import UnverifiedCheckpointError, VerifiedCheckpoint, verified_checkpoint
from cliplab.errors import UserError

CHECKPOINTS_DIR = "checkpoints"  # of a run directory
LATEST_FILE = "latest"
STEP_PREFIX = "step_"
_STEP_NAME = re.compile(r"step_(\d{7,})")
# How often a reader chooses again because the run pruned or replaced what it was verifying or
# reading; a run saving every step of a tiny model needed 2 at most in the tests.
CHOOSE_ATTEMPTS = 20

T = TypeVar("T")


class NoVerifiedCheckpointError(UserError):
    """Checkpoints exist, and not one of them verifies."""


def step_dir_name(step: int) -> str:
    return f"{STEP_PREFIX}{step:07d}"


def step_of(path: Path) -> int:
    return int(path.name[len(STEP_PREFIX):])


def step_dirs(directory: Path) -> list[Path]:
    """The step directories of `directory` in step order (verified or not)."""
    try:
        found = [path for path in directory.glob(f"{STEP_PREFIX}*")
                 if _STEP_NAME.fullmatch(path.name) and path.is_dir()]
    except FileNotFoundError:
        return []
    return sorted(found, key=step_of)


@dataclass(frozen=True)
class Pointer:
    """What `latest` says. name: the step directory it names (None when missing or not a step
    name); target: that directory when it exists; problem: what is wrong with the pointer, as a
    clause starting with its path (None when nothing is, or when there is no pointer)."""

    name: str | None
    target: Path | None
    problem: str | None

    def names_older_than(self, chosen: Path) -> bool:
        """Whether the pointer names a step before `chosen` (a save or a prune ran meanwhile)."""
        return self.name is not None and int(self.name[len(STEP_PREFIX):]) < step_of(chosen)


def read_pointer(directory: Path) -> Pointer:
    """The `latest` pointer of the checkpoints directory `directory` (reads one small file)."""
    pointer = directory / LATEST_FILE
    try:
        raw = pointer.read_bytes()
    except FileNotFoundError:
        return Pointer(None, None, None)
    except OSError as error:
        return Pointer(None, None, f"{pointer} cannot be read ({error.strerror or error})")
    try:
        name = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return Pointer(None, None, f"{pointer} holds bytes that are not UTF-8 text")
    if not _STEP_NAME.fullmatch(name):
        return Pointer(None, None, f"{pointer} holds {name[:40]!r}, not the name of a step directory")
    if not (directory / name).is_dir():
        return Pointer(name, None, f"{pointer} names {name}, which does not exist")
    return Pointer(name, directory / name, None)


def newest_verified(directory: Path, note: Callable[[str], None], *, advice: str) -> VerifiedCheckpoint | None:
    """The newest step directory of `directory` whose manifest verifies; `note` hears one line per
    checkpoint skipped, with its reason. None when there is no checkpoint yet (no step directory
    and no pointer). NoVerifiedCheckpointError, ending with `advice`, when checkpoints exist and none
    verifies."""
    noted: set[Path] = set()
    for _ in range(CHOOSE_ATTEMPTS):
        candidates = step_dirs(directory)
        found, skipped, moved = _first_verified(directory, candidates, note, noted)
        if found is not None:
            return found
        if moved:
            continue
        if candidates:
            raise NoVerifiedCheckpointError(f"none of the {len(candidates)} checkpoints in {directory} verifies "
                                            f"({'; '.join(skipped)}); {advice}")
        pointer = read_pointer(directory)
        if pointer.problem is None and pointer.target is None:
            return None
        raise NoVerifiedCheckpointError(
            f"{directory} holds no step directory although {LATEST_FILE} shows that checkpoints were written "
            f"({pointer.problem or 'it names ' + str(pointer.name)}); {advice}")
    raise NoVerifiedCheckpointError(f"the checkpoints in {directory} were replaced faster than they could be "
                                    f"verified ({CHOOSE_ATTEMPTS} tries); {advice}")


def _first_verified(directory: Path, candidates: list[Path], note: Callable[[str], None],
                    noted: set[Path]) -> tuple[VerifiedCheckpoint | None, list[str], bool]:
    """(the newest of `candidates` that verifies or None, the reasons of those skipped, whether the
    directory's listing changed meanwhile: then nothing is concluded from a failure)."""
    skipped = []
    for path in reversed(candidates):
        try:
            return verified_checkpoint(path), skipped, False
        except UnverifiedCheckpointError as error:
            if step_dirs(directory) != candidates:
                return None, skipped, True
            skipped.append(f"{path.name}: {error.reason}")
            if path not in noted:
                noted.add(path)
                note(f"skipping checkpoint {path}: it {error.reason}")
    return None, skipped, step_dirs(directory) != candidates


def read_whole(choose: Callable[[], VerifiedCheckpoint | Path],
               read: Callable[[Path, VerifiedCheckpoint | None], T]) -> T:
    """read(directory, verified) of the checkpoint `choose()` gives (a verified checkpoint, or a plain
    directory, read as it is with verified None), again with a fresh choice whenever the verified
    files changed during the read (pruned or replaced by the run writing them): the result then came
    from one whole verified checkpoint. An error of `read` on files that did not change is raised as
    it is."""
    for _ in range(CHOOSE_ATTEMPTS):
        chosen = choose()
        if not isinstance(chosen, VerifiedCheckpoint):
            return read(chosen, None)
        try:
            result = read(chosen.path, chosen)
        except Exception:
            if chosen.unchanged():
                raise
            continue
        if chosen.unchanged():
            return result
    raise UserError(f"the checkpoint chosen was removed or replaced while it was read, {CHOOSE_ATTEMPTS} times in a "
                    f"row (last: {chosen.path}): its run prunes faster than it can be read; read a copy of it")

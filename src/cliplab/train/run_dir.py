"""The run directory `<logs>/<name>/`: claiming it for one run, and which checkpoint the run resumes from.

`claim_run_dir(config)` (a collective) creates the directory on the main process, takes its lock
(`cliplab.train.checkpointing.run_lock`: a second run on the same directory, or a `--resume latest` while the run
is still alive, fails at once naming the holder's pid), refuses a fresh run over an existing one,
removes the leftovers of this run's own interrupted writes and the `preempted.json` of its last
attempt, and reads (or, the first time, writes) the run's id. Only the main process locks: it alone
writes the run directory, which every rank reads from a filesystem they share, so one lock per run
directory is one lock per run, on one node or many. Every rank gets the same `RunDirectory` or the same error (`run_on_main`).

A start that fails leaves nothing behind: `RunDirectory.removed_if_start_fails()` wraps the
building of the run (the configuration checked against the model, the tokenizer, the data opened),
and when that raises, the main process removes the directory this claim created (never one that was
there before: an earlier run's or the user's). So a mistyped path or model name costs no empty
`run.lock` + `run_id` directory.
"""

from __future__ import annotations

import contextlib
import datetime
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cliplab.checkpoint_files.manifest import UnverifiedCheckpointError, verify_checkpoint
from cliplab.distributed.agreement import run_on_main
from cliplab.eval.run_layout import CHECKPOINTS_DIR, LATEST_FILE, METRICS_FILE, PREEMPTED_FILE, RUN_ID_FILE
from cliplab.train.checkpointing.atomic_files import TMP_PREFIX, write_text_atomic
from cliplab.train.checkpointing.manager import CheckpointManager
from cliplab.train.checkpointing.run_lock import RunLock
from cliplab.train.config import ConfigError, TrainConfig

# What earlier cliplab versions left when killed while rewriting metrics.jsonl.
_LEGACY_LEFTOVERS = (METRICS_FILE + ".tmp",)


def default_run_name(config: TrainConfig) -> str:
    """open_clip's pattern: date-time, model, lr, batch size, e.g. 2026_11_23-09_30_00-model_tiny-lr_0.002-b_256."""
    stamp = datetime.datetime.now().strftime("%Y_%m_%d-%H_%M_%S")
    model = config.model.label.replace("/", "-")
    return f"{stamp}-model_{model}-lr_{config.optim.lr:g}-b_{config.loop.batch_size}"


@dataclass
class RunDirectory:
    """A claimed run directory: its path, the run's id and (on the main process) the held lock.
    A context manager: leaving it releases the lock."""

    path: Path
    run_id: str
    lock: RunLock | None = field(default=None, repr=False)
    created: bool = False  # this claim created the directory (known on the main process only)

    @contextlib.contextmanager
    def removed_if_start_fails(self) -> Iterator[None]:
        """Remove the directory when the block raises, if this claim created it (main process; the
        lock is still held, so no other run can have entered it). The error propagates."""
        try:
            yield
        except BaseException:
            if self.created and self.lock is not None:
                shutil.rmtree(self.path, ignore_errors=True)
            raise

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def __enter__(self) -> "RunDirectory":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def claim_run_dir(config: TrainConfig) -> RunDirectory:
    """Create, lock and return the run directory (see the module docstring). A collective."""
    held: list[RunLock] = []
    name, run_id, created = run_on_main(lambda: _claim_on_main(config, held))
    return RunDirectory(path=Path(config.logging.logs) / name, run_id=run_id, lock=held[0] if held else None,
                        created=created and bool(held))


def _claim_on_main(config: TrainConfig, held: list[RunLock]) -> tuple[str, str, bool]:
    name = config.logging.name or default_run_name(config)
    run_dir = Path(config.logging.logs) / name
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError("logging.logs", config.logging.logs, f"must be a directory cliplab can create "
                          f"the run directory in ({error})") from None
    lock = RunLock.acquire(run_dir)
    try:
        if config.checkpoint.resume is None and _holds_a_run(run_dir):
            raise ConfigError("logging.name", name, f"names an existing run ({run_dir}); use --resume latest "
                              "to continue it or choose another --name")
        remove_own_leftovers(run_dir)
        (run_dir / PREEMPTED_FILE).unlink(missing_ok=True)  # the last attempt's outcome; this one starts
        run_id = _read_or_create_run_id(run_dir)
    except BaseException:
        lock.release()
        raise
    held.append(lock)
    return name, run_id, created


def _holds_a_run(run_dir: Path) -> bool:
    """Whether a run logged or saved anything in `run_dir` (a start-up error before the first step
    leaves an empty metrics.jsonl, which does not count)."""
    metrics = run_dir / METRICS_FILE
    return (metrics.is_file() and metrics.stat().st_size > 0) or (run_dir / CHECKPOINTS_DIR).exists()


def remove_own_leftovers(run_dir: Path) -> None:
    """Remove what this run's interrupted writes left: temporary files (`.tmp-*`) in the run
    directory and its checkpoints directory, staging directories of checkpoints. Nothing else."""
    for path in run_dir.glob(f"{TMP_PREFIX}*"):
        if path.is_file():
            path.unlink(missing_ok=True)
    for name in _LEGACY_LEFTOVERS:
        (run_dir / name).unlink(missing_ok=True)
    if (run_dir / CHECKPOINTS_DIR).is_dir():
        CheckpointManager(run_dir / CHECKPOINTS_DIR, keep=1).remove_leftovers()


def _read_or_create_run_id(run_dir: Path) -> str:
    path = run_dir / RUN_ID_FILE
    try:
        text = path.read_bytes().decode("ascii").strip() if path.is_file() else ""
    except UnicodeDecodeError:
        text = ""
    if len(text) == 32 and all(char in "0123456789abcdef" for char in text):
        return text
    run_id = uuid.uuid4().hex  # a missing or damaged id: the run's older checkpoints are then never pruned
    write_text_atomic(path, run_id + "\n")
    return run_id


def resolve_resume(resume: str | None, checkpoints: CheckpointManager) -> Path | None:
    """None (fresh start), the run's newest checkpoint that verifies, or a given checkpoint directory
    that verifies. Main process only (it reads and hashes the checkpoints; the trainer shares the
    outcome with `run_on_main`).

    'latest' with no checkpoint yet starts fresh: torchrun restarts every worker with the same
    command line, and the first attempt has nothing to resume. When checkpoints exist and none
    verifies, it fails (`NoVerifiedCheckpointError`) rather than start over them.
    """
    if resume is None:
        return None
    if resume == "latest":
        return checkpoints.find_resumable()
    path = Path(resume)
    if path.is_file() and path.name == LATEST_FILE:
        found = CheckpointManager(path.parent, keep=1).find_resumable()
        if found is None:
            raise ConfigError("checkpoint.resume", resume, "names a pointer of a directory without checkpoints")
        return found
    if not path.is_dir():
        raise ConfigError("checkpoint.resume", resume, "must be 'latest' or an existing checkpoint directory")
    try:
        verify_checkpoint(path)
    except UnverifiedCheckpointError as error:
        raise ConfigError("checkpoint.resume", resume, f"must be a checkpoint that verifies; it {error.reason}") from None
    return path

"""Atomic step checkpoints: `checkpoints/step_XXXXXXX/` directories plus a `latest` pointer file.

Layout of one checkpoint directory:
    model.safetensors, config.json, tokenizer.json   a loadable bundle (cliplab.bundle.save)
    train_state.pt                                   optimiser, scaler, RNG states, data position,
                                                     counters (`cliplab.train.state.TrainState`)
`checkpoints/latest` is a text file naming the newest COMPLETE step directory.

Why it survives a kill at any instant: a checkpoint is written into a hidden temporary directory,
every file and the directory are fsynced, the directory is renamed into place (atomic on POSIX),
and only then is `latest` replaced (write a temporary file, fsync, os.replace, fsync the parent).
A kill before the rename leaves only a temporary directory that nothing points to; a kill between
the rename and the pointer update leaves `latest` naming the previous checkpoint. Either way resume
picks a complete checkpoint, and the leftovers are removed by the next save.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model
from torch import nn

from cliplab.bundle import WEIGHTS_FILE
from cliplab.bundle import save as save_bundle
from cliplab.data.seeding import mix_seed
from cliplab.distributed.agreement import gather_objects, run_on_main
from cliplab.errors import MissingInputError, UserError
from cliplab.eval.run_layout import LATEST_FILE
from cliplab.train.state import TrainState

TRAIN_STATE_FILE = "train_state.pt"
_STEP_PREFIX = "step_"
_TMP_PREFIX = ".tmp-"


def step_dir_name(step: int) -> str:
    return f"{_STEP_PREFIX}{step:07d}"


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and (when present) every CUDA device's generator state."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_rng_states() -> list[dict[str, Any]]:
    """Every rank's `rng_state()`, in rank order (a collective when a process group is in use)."""
    return gather_objects(rng_state())


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(directory: Path) -> None:
    for root, _, files in os.walk(directory):
        for name in files:
            _fsync_path(Path(root) / name)
        _fsync_path(Path(root))


def write_text_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` so that a reader sees the old or the new content, never a mix."""
    tmp_path = path.with_name(f"{_TMP_PREFIX}{path.name}.{os.getpid()}")
    with open(tmp_path, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp_path, path)
    _fsync_path(path.parent)


class CheckpointManager:
    """Saves, finds, loads and prunes the step checkpoints of one run directory."""

    def __init__(self, directory: str | Path, keep: int):
        self.directory = Path(directory)
        self.keep = keep

    def latest(self) -> Path | None:
        """The newest complete checkpoint directory, or None when there is none."""
        pointer = self.directory / LATEST_FILE
        if not pointer.is_file():
            return None
        name = pointer.read_text().strip()
        candidate = self.directory / name
        if not name or not (candidate / TRAIN_STATE_FILE).is_file():
            raise UserError(f"{pointer} names '{name}', which is not a complete checkpoint directory: pass "
                            "--resume a complete step directory of the run instead")
        return candidate

    def save(self, *, model: nn.Module, tokenizer: Any, optimizer: torch.optim.Optimizer | None,
             scaler: torch.amp.GradScaler | None, state: TrainState, config: dict,
             extra_modules: dict[str, nn.Module] | None = None, optimizer_state: dict | None = None,
             extra_states: dict[str, dict] | None = None) -> Path:
        """Write checkpoint `step_<state.step>` atomically, point `latest` at it, prune old ones.

        A collective: every rank calls it (the RNG states of all ranks are gathered, so that a
        resumed run replays each rank's dropout stream); the main process writes, and its failure
        is raised on every rank (`run_on_main`). Returns the checkpoint directory on every rank.
        `optimizer_state` / `extra_states`: state dicts gathered already (a sharded run's, see
        `cliplab.train.sharded_state`), in place of `optimizer.state_dict()` / the modules'.
        """
        rng_states = gather_rng_states()
        return run_on_main(lambda: self._write(
            model=model, tokenizer=tokenizer, state=state, payload={
                "train_state": state.to_dict(),
                "optimizer": optimizer_state if optimizer_state is not None else optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "rng": rng_states,
                "extra_modules": extra_states if extra_states is not None else {
                    name: module.state_dict() for name, module in (extra_modules or {}).items()},
                "config": config,
            }))

    def _write(self, *, model: nn.Module, tokenizer: Any, state: TrainState, payload: dict) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._remove_leftovers()
        final = self.directory / step_dir_name(state.step)
        tmp = self.directory / f"{_TMP_PREFIX}{final.name}.{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        save_bundle(model, tokenizer, tmp)
        torch.save(payload, tmp / TRAIN_STATE_FILE)
        _fsync_tree(tmp)
        if final.exists():
            # A directory no pointer names (killed after its rename, before `latest` moved): stale.
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_path(self.directory)
        write_text_atomic(self.directory / LATEST_FILE, final.name + "\n")
        self._prune(keep_name=final.name)
        return final

    def _remove_leftovers(self) -> None:
        for path in self.directory.glob(f"{_TMP_PREFIX}*"):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def step_dirs(self) -> list[Path]:
        """Step directories in step order (complete or not; `latest` is the authority)."""
        return sorted(p for p in self.directory.glob(f"{_STEP_PREFIX}*") if p.is_dir())

    def _prune(self, keep_name: str) -> None:
        complete = [p for p in self.step_dirs() if (p / TRAIN_STATE_FILE).is_file()]
        for path in complete[:-self.keep]:
            if path.name != keep_name:
                shutil.rmtree(path, ignore_errors=True)


def read_checkpoint(path: str | Path, *, mmap: bool = False) -> tuple[Path, dict]:
    """(the weights file, the train_state.pt payload) of the complete checkpoint `path`; with `mmap`
    the payload's tensors are memory-mapped (read when used, private copies when written)."""
    path = Path(path)
    if not (path / TRAIN_STATE_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise MissingInputError(f"{path} is not a complete cliplab checkpoint (needs {WEIGHTS_FILE} and "
                                f"{TRAIN_STATE_FILE})")
    return path / WEIGHTS_FILE, torch.load(path / TRAIN_STATE_FILE, map_location="cpu", weights_only=False,
                                           mmap=mmap)


def restore_run_state(payload: dict, *, scaler: torch.amp.GradScaler | None = None, restore_rng: bool = True,
                      rank: int = 0) -> TrainState:
    """The scaler and this rank's RNG states from a checkpoint payload; returns the counters.

    A rank the saved run had gets its own RNG states back. A rank it did not have (a resume on more
    ranks) gets fresh generators seeded from (run seed, rank, step): copying another rank's states
    would give two ranks the same dropout masks.
    """
    if scaler is not None and payload["scaler"] is not None:
        scaler.load_state_dict(payload["scaler"])
    train_state = TrainState.from_dict(payload["train_state"])
    if restore_rng:
        states = payload["rng"]
        if rank < len(states):
            set_rng_state(states[rank])
        else:
            seed = mix_seed(payload["config"]["loop"]["seed"], rank, train_state.step)
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)
    return train_state


def restore_training_state(path: str | Path, *, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                           scaler: torch.amp.GradScaler | None = None, restore_rng: bool = True,
                           rank: int = 0, extra_modules: dict[str, nn.Module] | None = None) -> TrainState:
    """Resume training from checkpoint `path`: restore an unwrapped model (strict), the optimiser, the
    scaler and this rank's RNG states in place (`restore_run_state`); return the counters.
    (Loading a model for use is `cliplab.bundle`'s job.)"""
    weights_file, payload = read_checkpoint(path)
    missing, unexpected = load_model(model, weights_file, strict=False)
    if missing or unexpected:
        raise UserError(f"checkpoint {path} was saved from another model: missing {missing}, unexpected "
                        f"{unexpected}; resume it with the --model and overrides it was trained with")
    for name, module in (extra_modules or {}).items():
        module.load_state_dict(payload["extra_modules"][name], strict=True)
    if optimizer is not None:
        optimizer.load_state_dict(payload["optimizer"])
    return restore_run_state(payload, scaler=scaler, restore_rng=restore_rng, rank=rank)

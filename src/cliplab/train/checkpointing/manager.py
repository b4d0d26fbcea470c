"""Step checkpoints that prove themselves: `checkpoints/step_XXXXXXX/` directories and a `latest` pointer.

Layout of one checkpoint directory:
    model.safetensors, config.json, tokenizer files  a loadable bundle (cliplab.save; lora.json too for
                                                     a model with LoRA adapters)
    ema.safetensors                                  the EMA of the trained weights, for a run with one
                                                     (`cliplab.train.step.ema`)
    train_state.pt                                   optimiser, scaler, RNG states, data position,
                                                     counters, run config (`train_state_file`: read
                                                     without running anything it contains)
    manifest.json                                    step, the writing run's id, and the size and
                                                     SHA-256 of every other file
                                                     (`cliplab.checkpoint_files.manifest`)
`checkpoints/latest` is a text file naming the newest checkpoint written. Neither resume nor any
other reader trusts it: each takes the newest step directory whose manifest verifies
(`cliplab.checkpoint_files.step_dirs.newest_verified`; `find_resumable` here).

Writing is `stage` (a hidden `.tmp-step_XXXXXXX` directory), the files, then `publish`: every file
is fsynced, the manifest is computed from the files as they are on disk and written last, fsynced
with the directory, the directory is renamed to `step_XXXXXXX` (atomic on POSIX) and the parent
fsynced; then `latest` is replaced (temporary file, fsync, os.replace, fsync) and old checkpoints
are pruned. A writer of sharded state (DCP: every rank writes its shards into the staging
directory) uses the same two calls: `stage` on the main process, the ranks' files, agreement, then
`publish` on the main process, which lists every file of the directory in the manifest.

What a kill at any instant leaves:
- before the manifest is complete: a staging directory that no step name points to; it is removed
  when the run starts again (`remove_leftovers`) and by the next save;
- after the rename, before `latest` moved: a complete step directory newer than the one `latest`
  names; resume takes it, and the next save moves the pointer;
- during pruning: fewer old checkpoints; the newest is complete.
Damage afterwards (a flipped byte, a truncated, missing or extra file, a bad pointer) makes the
checkpoint fail verification: resume says so and falls back to the next older one that verifies.
A full disk fails the save with `NoSpaceError` (path, size needed, free space); the staging
directory is removed and `latest` still names the previous checkpoint.

Pruning keeps the newest `keep` checkpoints written by this run (the manifest's run id is the
manager's) and the one just written; it never removes a directory the run did not write (no or an
unreadable manifest, another run's id).
"""

from __future__ import annotations

import os
import random
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from cliplab.checkpoint_files.manifest import (MANIFEST_FILE, UnverifiedCheckpointError, build_manifest, read_manifest,
                                               verify_checkpoint)
from cliplab.checkpoint_files.step_dirs import (LATEST_FILE, Pointer, newest_verified, read_pointer, step_dir_name,
                                                step_dirs, step_of)
from cliplab.data.seeding import mix_seed
from cliplab.distributed.agreement import run_on_main
from cliplab.errors import MissingInputError, UserError
from cliplab.pretrained.cliplab_bundle import WEIGHTS_FILE
from cliplab.pretrained.cliplab_bundle import save as save_bundle
from cliplab.pretrained.weight_files import SafetensorsReader
from cliplab.train.checkpointing.atomic_files import (TMP_PREFIX, fsync_path, fsync_tree, raise_if_out_of_space, save_torch,
                                        tensor_bytes, write_text_atomic)
from cliplab.train.checkpointing.payload import (TRAIN_STATE_FILE, gather_rng_states, read_train_state, set_rng_state,
                                            training_payload)
from cliplab.train.state import TrainState
from cliplab.train.step.ema import WeightEma

SET_ASIDE_PREFIX = "rejected_"


class CheckpointManager:
    """Saves, finds, verifies and prunes the step checkpoints of one run directory.

    run_id: the id of the run that owns the directory (`cliplab.train.run_dir`); written into
    every manifest, and the only checkpoints pruning removes are those carrying it. None: a fresh
    id, so that the manager prunes only what it wrote itself.
    """

    def __init__(self, directory: str | Path, keep: int, run_id: str | None = None):
        self.directory = Path(directory)
        self.keep = keep
        self.run_id = run_id or uuid.uuid4().hex

    def latest(self) -> Path | None:
        """The checkpoint `latest` names; None when the pointer is missing or unreadable or names no
        directory holding a manifest. Reads no checkpoint file (`find_resumable` verifies)."""
        target = read_pointer(self.directory).target
        return target if target is not None and (target / MANIFEST_FILE).is_file() else None

    def step_dirs(self) -> list[Path]:
        """Step directories in step order (verified or not)."""
        return step_dirs(self.directory)

    def find_resumable(self, note: Callable[[str], None] = print) -> Path | None:
        """The newest step directory whose manifest verifies; `note` hears one line per checkpoint
        skipped (with its reason) and about a bad `latest`, which is then pointed at the checkpoint
        chosen. None when the run has no checkpoint yet (no step directory and no pointer).
        NoVerifiedCheckpointError when checkpoints exist and none verifies: starting afresh would
        prune or overwrite them."""
        pointer = read_pointer(self.directory)
        found = newest_verified(self.directory, note, advice=f"restore one from a copy, or move {self.directory} "
                                "away to start the run afresh")
        if found is None:
            return None
        if pointer.target != found.path:
            self._repoint(found.path, pointer, note)
        return found.path

    def _repoint(self, chosen: Path, pointer: Pointer, note: Callable[[str], None]) -> None:
        """Point `latest` at the checkpoint resume chose, saying why when the pointer was wrong."""
        if pointer.problem is not None:
            note(f"{pointer.problem}; resuming from the newest checkpoint that verifies, {chosen.name}")
        elif pointer.target is None:
            note(f"{self.directory / LATEST_FILE} is missing; resuming from the newest checkpoint that "
                 f"verifies, {chosen.name}")
        elif step_of(pointer.target) < step_of(chosen):
            note(f"{LATEST_FILE} names {pointer.target.name}; {chosen.name} is newer and verifies (a save ended "
                 "before it moved the pointer)")
        write_text_atomic(self.directory / LATEST_FILE, chosen.name + "\n")

    def save(self, *, model: nn.Module, tokenizer: Any, optimizer: torch.optim.Optimizer,
             scaler: torch.amp.GradScaler | None, state: TrainState, config: dict,
             extra_modules: dict[str, nn.Module] | None = None, ema: WeightEma | None = None) -> Path:
        """Write checkpoint `step_<state.step>` (see the module docstring), point `latest` at it, prune.

        A collective: every rank calls it (the RNG states of all ranks are gathered, so that a
        resumed run replays each rank's dropout stream); the main process writes, and its failure
        is raised on every rank (`run_on_main`). Returns the checkpoint directory on every rank.
        """
        rng_states = gather_rng_states()
        return run_on_main(lambda: self._write(
            model=model, tokenizer=tokenizer, step=state.step, ema=ema, payload=training_payload(
                state=state, scaler=scaler, rng_states=rng_states, config=config, optimizer=optimizer,
                extra_modules=extra_modules)))

    def _write(self, *, model: nn.Module, tokenizer: Any, step: int, payload: dict,
               ema: WeightEma | None = None) -> Path:
        needed = tensor_bytes(model.state_dict()) + tensor_bytes(payload)
        if ema is not None:
            needed += tensor_bytes(ema.averages)
        staging = self.stage(step)
        try:
            save_bundle(model, tokenizer, staging)
            if ema is not None:
                ema.save(staging)
            save_torch(payload, staging / TRAIN_STATE_FILE)
            return self.publish(staging, step)
        except BaseException as error:
            shutil.rmtree(staging, ignore_errors=True)
            previous = self.latest()
            raise_if_out_of_space(error, self.directory / step_dir_name(step), needed, consequence=(
                f"; {LATEST_FILE} still names {previous.name}" if previous is not None else "") + (
                "; free space (or train with --logs on a larger disk) and continue with --resume latest"))
            raise

    def stage(self, step: int) -> Path:
        """A fresh, empty staging directory for checkpoint `step` (leftovers of earlier saves removed).
        Its name depends on the step only, so that every rank of a sharded writer can find it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.remove_leftovers()
        staging = self.directory / f"{TMP_PREFIX}{step_dir_name(step)}"
        staging.mkdir()
        return staging

    def publish(self, staging: Path, step: int) -> Path:
        """Make the files in `staging` checkpoint `step`: fsync them, write the manifest over all of
        them, rename into place, point `latest` at it, prune. Main process only."""
        fsync_tree(staging)
        manifest = build_manifest(staging, step=step, run_id=self.run_id)
        with open(staging / MANIFEST_FILE, "w", encoding="utf-8") as handle:
            handle.write(manifest.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        fsync_path(staging)
        final = self.directory / step_dir_name(step)
        if final.exists():
            self._clear_target(final)
        os.rename(staging, final)
        fsync_path(self.directory)
        write_text_atomic(self.directory / LATEST_FILE, final.name + "\n")
        self._prune(keep_path=final)
        return final

    def _clear_target(self, final: Path) -> None:
        """Make way for a new checkpoint of the same step: one of this run's that verifies is replaced;
        anything else there is renamed to `rejected_<name>` (kept, not deleted)."""
        try:
            if verify_checkpoint(final).run_id == self.run_id:
                shutil.rmtree(final)
                return
        except UnverifiedCheckpointError:
            pass
        aside = self.directory / f"{SET_ASIDE_PREFIX}{final.name}"
        suffix = 1
        while aside.exists():
            suffix += 1
            aside = self.directory / f"{SET_ASIDE_PREFIX}{final.name}.{suffix}"
        os.rename(final, aside)
        print(f"note: {final} did not verify as this run's checkpoint; renamed it to {aside.name}")

    def remove_leftovers(self) -> None:
        """Remove the staging directories and temporary pointer files of interrupted saves (all named
        `.tmp-*`; nothing else in the directory is touched)."""
        for path in self.directory.glob(f"{TMP_PREFIX}*"):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def _prune(self, keep_path: Path) -> None:
        ours = [keep_path]
        for path in self.step_dirs():
            if path == keep_path:
                continue
            try:
                if read_manifest(path).run_id == self.run_id:
                    ours.append(path)
            except UnverifiedCheckpointError:
                continue  # not (provably) written by this run: never removed
        ours.sort(key=step_of)
        for path in ours[:-self.keep]:
            if path != keep_path:
                shutil.rmtree(path, ignore_errors=True)


def read_checkpoint(path: str | Path, *, mmap: bool = False) -> tuple[Path, dict]:
    """(the weights file, the train_state.pt payload) of the complete checkpoint `path`; with `mmap`
    the payload's tensors are memory-mapped (read when used, private copies when written). Pass a
    checkpoint `verify_checkpoint` accepted (the run's resume does, once, on the main process);
    this reads the files as they are, running nothing they contain (`read_train_state`)."""
    path = Path(path)
    if not (path / TRAIN_STATE_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise MissingInputError(f"{path} is not a complete cliplab checkpoint (needs {WEIGHTS_FILE} and "
                                f"{TRAIN_STATE_FILE})")
    return path / WEIGHTS_FILE, read_train_state(path / TRAIN_STATE_FILE, mmap=mmap)


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
    (Loading a model for use is `cliplab.model_io`'s job.)"""
    weights_file, payload = read_checkpoint(path)
    weights = SafetensorsReader(weights_file)
    expected = model.state_dict()
    missing = sorted(expected.keys() - weights.shapes.keys())
    unexpected = sorted(weights.shapes.keys() - expected.keys())
    if missing or unexpected:
        raise UserError(f"checkpoint {path} was saved from another model: missing {missing}, unexpected "
                        f"{unexpected}; resume it with the --model and overrides it was trained with")
    model.load_state_dict(weights.read_all(), strict=True)
    for name, module in (extra_modules or {}).items():
        module.load_state_dict(payload["extra_modules"][name], strict=True)
    if optimizer is not None:
        optimizer.load_state_dict(payload["optimizer"])
    return restore_run_state(payload, scaler=scaler, restore_rng=restore_rng, rank=rank)

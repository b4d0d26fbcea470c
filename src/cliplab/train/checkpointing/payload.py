"""`train_state.pt`: what a checkpoint holds besides the model, built here only, and read without
running anything it contains.

The payload (`training_payload`), one dict:
    train_state     `TrainState.to_dict()`: the counters and the data position
    scaler          `GradScaler.state_dict()`, or None
    rng             every rank's generator states, in rank order (`rng_state`)
    config          the run's resolved config (plain values)
    optimizer       `optimizer.state_dict()`            } single-file checkpoints only: an FSDP2
    extra_modules   the objective heads' state dicts    } checkpoint keeps them in its DCP shards

It is written with `torch.save` (`atomic_files.save_torch`) and read with
`torch.load(weights_only=True)`, which unpickles tensors, dicts, lists, tuples, strings, numbers,
booleans and None and refuses every other global: a file holding a `__reduce__` payload fails in
one line naming it, having run nothing. Everything the payload holds is of those types; the NumPy
generator state, whose key is an array, is stored with that key as an int64 tensor (`rng_state`).
Checkpoints written before that hold a NumPy array there; they still resume, the reader allowing
exactly the globals such an array needs (`_LEGACY_NUMPY_GLOBALS`: numpy's array reconstruction,
ndarray, dtype and the uint32 dtype class), which build arrays and nothing else.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:
    from numpy._core.multiarray import _reconstruct as _numpy_reconstruct
except ImportError:  # NumPy 1
    from numpy.core.multiarray import _reconstruct as _numpy_reconstruct

from cliplab.distributed.agreement import gather_objects
from cliplab.errors import UserError
from cliplab.pretrained.weight_files import load_failure
from cliplab.train.state import TrainState

TRAIN_STATE_FILE = "train_state.pt"
_REQUIRED = {"train_state": dict, "rng": list, "config": dict}
_LEGACY_NUMPY_GLOBALS = [(_numpy_reconstruct, "numpy._core.multiarray._reconstruct"),
                         (_numpy_reconstruct, "numpy.core.multiarray._reconstruct"),
                         np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch CPU generator states, and every CUDA device's when present. NumPy's is
    its legacy tuple with the key as an int64 tensor (`np.random.get_state()[1]`, 624 uint32 words)."""
    name, key, position, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state = {"python": random.getstate(),
             "numpy": (name, torch.from_numpy(key.astype(np.int64)), position, has_gauss, cached_gaussian),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned (or what a checkpoint from before the tensor key holds)."""
    random.setstate(state["python"])
    name, key, *rest = state["numpy"]
    key = key.numpy() if isinstance(key, torch.Tensor) else key
    np.random.set_state((name, np.asarray(key, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_rng_states() -> list[dict[str, Any]]:
    """Every rank's `rng_state()`, in rank order (a collective when a process group is in use)."""
    return gather_objects(rng_state())


def training_payload(*, state: TrainState, scaler: torch.amp.GradScaler | None, rng_states: list[dict[str, Any]],
                     config: dict, optimizer: torch.optim.Optimizer | None = None,
                     extra_modules: dict[str, torch.nn.Module] | None = None) -> dict[str, Any]:
    """The payload of `train_state.pt` (see the module docstring); `optimizer` given: a single-file
    checkpoint's, with the optimiser and objective-head states."""
    payload = {"train_state": state.to_dict(), "scaler": scaler.state_dict() if scaler is not None else None,
               "rng": rng_states, "config": config}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
        payload["extra_modules"] = {name: module.state_dict() for name, module in (extra_modules or {}).items()}
    return payload


def read_train_state(path: Path, *, mmap: bool = False) -> dict[str, Any]:
    """The payload of `train_state.pt` at `path` (tensors memory-mapped with `mmap`); UserError in one
    line naming the file when it holds anything else (a global other than the allowed types, a
    damaged archive, a payload without its sections)."""
    try:
        with torch.serialization.safe_globals(_LEGACY_NUMPY_GLOBALS):
            payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:  # pickle, zip and torch errors have no common base class
        raise UserError(f"{path}: not a training state cliplab reads without running code "
                        f"({load_failure(error)})") from None
    if not isinstance(payload, dict):
        raise UserError(f"{path}: expected a training state (a dict), got {type(payload).__name__}")
    for key, kind in _REQUIRED.items():
        if not isinstance(payload.get(key), kind):
            raise UserError(f"{path}: the training state lacks its {key!r} section (a {kind.__name__})")
    return payload


"""Which bundle directory a user means by CHECKPOINT, and loading it (`cliplab.load`).

Three kinds of path are accepted:
  bundle directory        model.safetensors + config.json + tokenizer.json, as `cliplab.save` writes
  training checkpoint     `<run>/checkpoints/step_XXXXXXX/`: a bundle plus train_state.pt
  run directory           `<run>/`: resolved through `<run>/checkpoints/latest`, a text file naming
                          the newest complete step directory (a `checkpoints/` directory itself also
                          resolves through its `latest` file)
Anything else fails with a message naming the path and what was looked for. Reading the bundle
(format version, tensor names and shapes) is `cliplab.bundle.load`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from cliplab.bundle import CONFIG_FILE, WEIGHTS_FILE
from cliplab.bundle import load as load_bundle
from cliplab.data.tokenizer import Tokenizer
from cliplab.data.transforms import ImageTransform
from cliplab.models import CLIP

# The files that mark a directory as a bundle; `load_bundle` names any other file it lacks.
BUNDLE_FILES = (WEIGHTS_FILE, CONFIG_FILE)
CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"


class CheckpointNotFoundError(FileNotFoundError):
    """A path that is neither a bundle, a training checkpoint nor a run directory."""


def resolve_checkpoint(path: str | Path) -> Path:
    """The bundle directory that `path` designates (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint path {path} does not exist")
    if path.is_file():
        raise CheckpointNotFoundError(
            f"checkpoint path {path} is a file; expected a bundle directory (holding "
            f"{' and '.join(BUNDLE_FILES)}), a training checkpoint directory or a run directory"
        )
    if is_bundle(path):
        return path
    for pointer in (path / CHECKPOINTS_DIR / LATEST_FILE, path / LATEST_FILE):
        if pointer.is_file():
            return _follow_latest(pointer)
    if (path / CHECKPOINTS_DIR).is_dir():
        raise CheckpointNotFoundError(
            f"run directory {path} has no {CHECKPOINTS_DIR}/{LATEST_FILE}: training has not completed "
            "a checkpoint yet; pass a step directory explicitly if one is complete"
        )
    raise CheckpointNotFoundError(
        f"{path} is not a checkpoint: expected a bundle directory holding {' and '.join(BUNDLE_FILES)}, "
        f"a training checkpoint directory, or a run directory with {CHECKPOINTS_DIR}/{LATEST_FILE}"
    )


def is_bundle(path: Path) -> bool:
    return path.is_dir() and all((path / name).is_file() for name in BUNDLE_FILES)


def _follow_latest(pointer: Path) -> Path:
    name = pointer.read_text().strip()
    if not name:
        raise CheckpointNotFoundError(f"{pointer} is empty; expected the name of a checkpoint directory")
    target = pointer.parent / name  # an absolute name replaces the parent
    if not is_bundle(target):
        raise CheckpointNotFoundError(
            f"{pointer} names {target}, which is not a complete checkpoint (needs {' and '.join(BUNDLE_FILES)})"
        )
    return target


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A model ready for inference: eval mode, on `device`; preprocess: PIL image -> Float[3, S, S]."""

    model: torch.nn.Module
    preprocess: Callable[[Any], torch.Tensor]
    tokenizer: Callable[[list[str]], torch.Tensor]
    path: Path
    device: torch.device


def load(path: str | Path, device: torch.device | str = "cpu") -> tuple[CLIP, ImageTransform, Tokenizer]:
    """`cliplab.load`: (model in eval mode on `device`, preprocess: PIL image -> Float[3, S, S],
    tokenizer: list of N strings -> Long[N, T]) of the bundle that `path` designates."""
    return load_bundle(resolve_checkpoint(path), device=device)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> LoadedCheckpoint:
    """`load`, keeping the resolved bundle directory and the device beside the three objects."""
    bundle_dir = resolve_checkpoint(path)
    device = torch.device(device)
    model, preprocess, tokenizer = load_bundle(bundle_dir, device=device)
    return LoadedCheckpoint(model=model, preprocess=preprocess, tokenizer=tokenizer, path=bundle_dir, device=device)

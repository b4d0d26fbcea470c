"""Which bundle directory a user means by CHECKPOINT, and loading it.

Three kinds of path are accepted:
  bundle directory        model.safetensors + config.json (+ tokenizer.json), as `cliplab.bundle.save`
  training checkpoint     `<run>/checkpoints/step_XXXXXXX/`: a bundle plus train_state.pt
  run directory           `<run>/`: resolved through `<run>/checkpoints/latest`, a text file naming
                          the newest complete step directory (a `checkpoints/` directory itself also
                          resolves through its `latest` file)
Anything else fails with a message naming the path and what was looked for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

BUNDLE_FILES = ("model.safetensors", "config.json")
CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"
# Newest bundle layout this code reads; bundles written before versioning carry no key and are
# read as version 1.
SUPPORTED_FORMAT_VERSION = 1


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


def check_format_version(bundle_dir: Path) -> int:
    """The bundle's `format_version` (1 when absent); raises when this cliplab is too old to read it."""
    config_path = bundle_dir / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointNotFoundError(f"{config_path} is not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise CheckpointNotFoundError(f"{config_path} must hold a JSON object, got {type(config).__name__}")
    version = config.get("format_version", 1)
    if not isinstance(version, int) or version < 1:
        raise CheckpointNotFoundError(f"{config_path}: format_version must be a positive integer, got {version!r}")
    if version > SUPPORTED_FORMAT_VERSION:
        raise CheckpointNotFoundError(
            f"{config_path} has format_version {version}; this cliplab reads up to "
            f"{SUPPORTED_FORMAT_VERSION}: upgrade cliplab to load it"
        )
    return version


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A model ready for inference: eval mode, on `device`; preprocess: PIL image -> Float[3, S, S]."""

    model: torch.nn.Module
    preprocess: Callable[[Any], torch.Tensor]
    tokenizer: Callable[[list[str]], torch.Tensor]
    path: Path
    device: torch.device


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> LoadedCheckpoint:
    """Resolve `path`, check its format version, load the bundle onto `device` in eval mode."""
    from cliplab.bundle import load as load_bundle

    bundle_dir = resolve_checkpoint(path)
    check_format_version(bundle_dir)
    model, preprocess, tokenizer = load_bundle(bundle_dir)
    device = torch.device(device)
    model = model.to(device).eval()
    return LoadedCheckpoint(model=model, preprocess=preprocess, tokenizer=tokenizer, path=bundle_dir, device=device)

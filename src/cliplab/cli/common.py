"""What the commands that use a trained model share: their parser, --device, flag checks, --out.

Nothing here reports errors: a problem with the user's input is raised as a `UserError`, reported by
`cliplab.cli.main`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cliplab.errors import MissingInputError, UserError


class NoCheckpointError(MissingInputError):
    """CHECKPOINT is neither a bundle, a training checkpoint nor a run directory holding one."""


def add_command_parser(subparsers: argparse._SubParsersAction, name: str, *, help: str, description: str,
                       epilog: str) -> argparse.ArgumentParser:
    """A sub-command parser whose epilog (its examples) keeps its line breaks."""
    return subparsers.add_parser(name, help=help, description=description, epilog=epilog,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")


def require_at_least(flag: str, value: int | None, minimum: int) -> None:
    """UserError naming `flag` unless `value` (None: not given) is >= `minimum`."""
    if value is not None and value < minimum:
        raise UserError(f"{flag} must be >= {minimum}, got {value}")


def existing_images(images: list[str]) -> list[Path]:
    """The IMAGE arguments as paths; MissingInputError naming the first that is not a file."""
    paths = [Path(image) for image in images]
    for path in paths:
        if not path.is_file():
            raise MissingInputError(f"IMAGE {path} does not exist")
    return paths


def load_for_use(checkpoint: str | Path, device: str | None):
    """The model, preprocess and tokenizer of CHECKPOINT (a bundle, step or run directory) on
    `device` (None: cuda when available), as `cliplab.eval.checkpoint_path.LoadedCheckpoint`."""
    import torch

    from cliplab.eval.checkpoint_path import CheckpointNotFoundError, load_checkpoint

    try:
        return load_checkpoint(checkpoint, device=device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except CheckpointNotFoundError as error:
        # Until CheckpointNotFoundError is a UserError itself (the bundle module's rework).
        raise NoCheckpointError(str(error)) from None


def write_json(path: str | Path, value: Any) -> Path:
    """Write `value` as indented JSON to `path` (parent directories created); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(value, indent=2) + "\n")
    print(f"wrote {out}")
    return out

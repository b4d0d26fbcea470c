"""Format "bundle": cliplab's own, a bundle directory (`cliplab.save`), a training step directory
(weights in `model.safetensors` or an FSDP2 run's DCP `shards/`) or a run directory (its newest
checkpoint that verifies); read and written by `cliplab.pretrained.cliplab_bundle`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cliplab.pretrained.formats.spec import CheckpointFormat, ExportForm, LoadedModel, Location


def detect(location: Location) -> bool:
    """A directory that is no foreign checkpoint directory (its checkpoint is chosen, or it says
    what it holds instead), or a file of a bundle."""
    from cliplab.pretrained.cliplab_bundle import is_bundle
    from cliplab.pretrained.formats.hf import is_hf_directory
    from cliplab.pretrained.formats.open_clip_hub import is_hub_directory

    path = location.path
    if path.is_dir():
        return not (is_hub_directory(path) or is_hf_directory(path))
    return path.is_file() and is_bundle(path.parent)


def read(location: Location) -> LoadedModel:
    from cliplab.pretrained.cliplab_bundle import read_bundle

    return read_bundle(location)


def check(model: Any, tokenizer: Any) -> None:
    """A bundle holds any cliplab model with a tokenizer that fits it (checked by every writer)."""


def write(model: Any, tokenizer: Any, directory: Path) -> Path:
    from cliplab.pretrained.cliplab_bundle import save

    return save(model, tokenizer, directory)


FORMAT = CheckpointFormat(
    name="bundle", architecture="carried",
    summary="a cliplab bundle (config.json + model.safetensors + tokenizer files), a training step directory, "
            "or a run directory with checkpoints/latest",
    detect=detect, read=read, export=ExportForm(name="bundle", check=check, write=write), holds_ema=True,
)

"""cliplab's own checkpoint format: bundles, training step directories and run directories (the
format "bundle" of `cliplab.pretrained.formats`, whose entry reads through `read_bundle`).

A bundle is one directory: `model.safetensors` (the unwrapped model's state dict, no `module.` /
`_orig_mod.` prefixes), `config.json` (`ModelConfig.to_dict()` plus `"format_version"`), and the
tokenizer's files (`cliplab.data.tokenizer_files.save_tokenizer`); a model with LoRA adapters
(`cliplab.models.lora`) adds `lora.json`, and loading it merges the adapters into the weights. A
training checkpoint of a run with an EMA holds the EMA weights too (`cliplab.pretrained.ema_weights`):
`load(..., ema=True)` gives the model with them. A bundle written before the
version key existed reads as version 1; one from a newer cliplab is refused with a request to
upgrade. When the layout changes, bump FORMAT_VERSION and convert the older versions in
`read_config`, so that every bundle ever written still loads (`tests/fixtures/bundle_format_1/` is
a committed version-1 bundle that the tests load). New config fields default to the first layout's
behaviour, so version 1 still describes every bundle.

An FSDP2 run's step directory reads as a bundle whose weights are the DCP directory `shards/`
(`cliplab.pretrained.dcp_reader`, one process, no process group); `cliplab export --format bundle`
writes it out with a single `model.safetensors`.

Every read of a training checkpoint (`cliplab.load`, `load_model`, and through them eval, classify,
embed, export and `train --pretrained`) reads it as resume does: a run directory (or its
`checkpoints/`) gives its newest step directory whose manifest verifies, whatever `latest` says,
each checkpoint skipped being one line on stderr with the reason
(`cliplab.checkpoint_files.step_dirs`); a directory named explicitly that holds a manifest must
verify (one line naming the problem otherwise); a bundle without one (`save`'s) is read as it is.
The checkpoint is read whole or not at all: when the run writing it prunes or replaces it during
the read, the read starts again on the newest checkpoint that verifies (`read_whole`). No file is
read by anything that could run code it contains (`cliplab.pretrained.weight_files`,
`cliplab.pretrained.dcp_files`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import save_file
from torch import nn

from cliplab.checkpoint_files.manifest import MANIFEST_FILE, VerifiedCheckpoint, verified_checkpoint
from cliplab.checkpoint_files.step_dirs import (CHECKPOINTS_DIR, LATEST_FILE, NoVerifiedCheckpointError,
                                                newest_verified, read_pointer, read_whole, step_dirs)
from cliplab.data.tokenizer_files import load_tokenizer, save_tokenizer
from cliplab.data.transforms import image_transform
from cliplab.errors import UserError
from cliplab.file_names import DCP_SHARDS_DIR, MODEL_CONFIG_FILE
from cliplab.models import CLIP, ModelConfig, build_model
from cliplab.models.config import read_json_object
from cliplab.models.config import read_json_object
from cliplab.models.lora import add_lora, lora_spec_of, merge_lora, read_lora_spec, write_lora_spec
from cliplab.models.tokenizer_fit import check_tokenizer_fits
from cliplab.models.wrappers import cliplab_model
from cliplab.pretrained.dcp_reader import DcpModelReader, is_sharded_checkpoint
from cliplab.pretrained.ema_weights import ema_reader
from cliplab.pretrained.formats import accepted_formats, foreign_directory
from cliplab.pretrained.formats.spec import CheckpointNotFoundError, LoadedModel, Location, WeightsOpener
from cliplab.pretrained.key_maps import check_state_dict
from cliplab.pretrained.loaders import check_architecture, fill_model
from cliplab.pretrained.weight_files import SafetensorsReader

WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1
FORMAT_VERSION_KEY = "format_version"


def save(model: nn.Module, tokenizer: Any, path: str | os.PathLike) -> Path:
    """Write the bundle directory `path` (created if needed; bundle files in it are replaced)."""
    model = cliplab_model(model)
    directory = save_description(model.config, tokenizer, path)
    state = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    write_lora_spec(lora_spec_of(model), directory)
    return directory


def save_description(config: ModelConfig, tokenizer: Any, path: str | os.PathLike) -> Path:
    """A bundle's `config.json` and tokenizer files in directory `path` (created), without weights:
    `save` adds `model.safetensors`; a sharded training checkpoint has its DCP shards instead."""
    check_tokenizer_fits(config, tokenizer, "save")
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / MODEL_CONFIG_FILE, "w") as handle:
        json.dump({FORMAT_VERSION_KEY: FORMAT_VERSION, **config.to_dict()}, handle, indent=2)
        handle.write("\n")
    save_tokenizer(tokenizer, directory)
    return directory


def check_format_version(config_values: dict, source: str) -> int:
    """The `format_version` of a parsed config.json (1 when absent); UserError naming `source` when
    it is not a positive int or is newer than this cliplab reads."""
    version = config_values.get(FORMAT_VERSION_KEY, 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UserError(f"{source}: {FORMAT_VERSION_KEY} must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise UserError(f"{source} has {FORMAT_VERSION_KEY} {version}; this cliplab reads up to "
                        f"{FORMAT_VERSION}: upgrade cliplab to load it")
    return version


def read_config(path: str | os.PathLike) -> ModelConfig:
    """The ModelConfig of a bundle's config.json at `path`, any readable format version."""
    source = str(path)
    try:
        values = read_json_object(path, repr(source))
    except ValueError as error:
        raise UserError(str(error)) from error
    check_format_version(values, source=repr(source))
    values = {key: value for key, value in values.items() if key != FORMAT_VERSION_KEY}
    try:
        return ModelConfig.from_dict(values)
    except ValueError as error:
        raise UserError(f"{source!r}: {error}") from error


def is_bundle(path: Path) -> bool:
    """A directory with cliplab's weights and config files (and not a foreign checkpoint directory:
    a Hugging Face one has them too); the weights are `model.safetensors`, or DCP shards (an FSDP2
    run's step directory)."""
    return (path.is_dir() and ((path / WEIGHTS_FILE).is_file() or is_sharded_checkpoint(path))
            and (path / MODEL_CONFIG_FILE).is_file() and not foreign_directory(path))


def _note(line: str) -> None:
    print(line, file=sys.stderr)


def resolve_checkpoint(path: str | Path, note: Callable[[str], None] = _note) -> Path:
    """The cliplab bundle directory that a bundle, step or run directory designates: a run (or its
    `checkpoints/` directory) gives its newest checkpoint that verifies; `note` hears one line per
    checkpoint skipped."""
    chosen = choose_checkpoint(Path(path), note)
    return chosen.path if isinstance(chosen, VerifiedCheckpoint) else chosen


def choose_checkpoint(path: Path, note: Callable[[str], None] = _note) -> VerifiedCheckpoint | Path:
    """What a reader of `path` reads (see the module docstring): a verified checkpoint, or a bundle
    without a manifest (read as it is). CheckpointNotFoundError, or the verification's error for a
    damaged checkpoint named explicitly, in one line."""
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint path {path} does not exist")
    if is_bundle(path):
        return verified_checkpoint(path) if (path / MANIFEST_FILE).is_file() else path
    checkpoints = path / CHECKPOINTS_DIR if (path / CHECKPOINTS_DIR).is_dir() else path
    if checkpoints is path and not ((path / LATEST_FILE).is_file() or step_dirs(path)):
        found = sorted(entry.name for entry in path.iterdir())[:8] if path.is_dir() else [path.name]
        raise CheckpointNotFoundError(f"{path} is not a checkpoint: it holds {found or 'nothing'}; "
                                      f"{accepted_formats()}")
    return _newest_in_run(checkpoints, path, note)


def _newest_in_run(checkpoints: Path, run: Path, note: Callable[[str], None]) -> VerifiedCheckpoint:
    pointer = read_pointer(checkpoints)
    no_pointer = (f"run directory {run} has no {CHECKPOINTS_DIR}/{LATEST_FILE}: training has not completed a "
                  "checkpoint yet")
    try:
        found = newest_verified(checkpoints, note, advice="restore one from a copy; a step directory an older "
                                f"cliplab wrote without {MANIFEST_FILE} loads when named directly")
    except NoVerifiedCheckpointError as error:
        missing = pointer.name is None and pointer.problem is None
        raise CheckpointNotFoundError(f"{no_pointer}; {error}" if missing else str(error)) from None
    if found is None:
        raise CheckpointNotFoundError(f"{no_pointer}; pass a step directory explicitly if one is complete")
    if pointer.problem is not None and not pointer.names_older_than(found.path):
        note(f"{pointer.problem}; reading the newest checkpoint that verifies, {found.path.name}")
    if not is_bundle(found.path):
        raise CheckpointNotFoundError(f"{found.path} verifies but holds no model (needs {MODEL_CONFIG_FILE} and "
                                      f"{WEIGHTS_FILE} or {DCP_SHARDS_DIR}/)")
    return found


def _bundle_weights(directory: Path, expected: dict[str, torch.Tensor], ema: bool = False
                    ) -> Callable[[str], torch.Tensor]:
    """take(name) -> the bundle's tensor `name`, shaped as in `expected` (a state dict of the
    bundle's architecture; meta will do), from its EMA weights where `ema` asks for them. Names and
    shapes are checked first (from the safetensors header, or from DCP's metadata for shards); then
    one tensor is read per call (from DCP shards, all of them on the first call)."""
    sharded = not (directory / WEIGHTS_FILE).is_file()
    source = directory / (DCP_SHARDS_DIR if sharded else WEIGHTS_FILE)
    reader = DcpModelReader(source) if sharded else SafetensorsReader(source)
    if ema:
        reader = ema_reader(directory, reader)
    check_state_dict(expected, reader.shapes, source=str(source))
    return lambda name: reader.read(name).reshape(expected[name].shape)


def _read_bundle(directory: Path, verified: VerifiedCheckpoint | None, device: torch.device,
                 output_dict: bool, ema: bool = False) -> tuple[CLIP, Any, WeightsOpener]:
    """The bundle's model built on meta and its weights copied in (unless `device` is meta), its
    tokenizer, and the opener of its weights (which refuses a checkpoint changed since `verified`).
    A bundle with LoRA adapters is read whole onto the CPU and merged, on any `device`."""
    config = read_config(directory / MODEL_CONFIG_FILE)
    lora = read_lora_spec(directory)
    with torch.device("meta"):
        model = build_model(config, output_dict=output_dict)
    adapted = add_lora(model, lora) if lora is not None else None
    expected = model.state_dict()

    def weights() -> Callable[[str], torch.Tensor]:
        if verified is not None and not verified.unchanged():
            raise CheckpointNotFoundError(f"checkpoint {directory} was removed or replaced since it was verified "
                                          "(pruned by the run writing it?); read it again")
        return _bundle_weights(directory, expected, ema)
    if adapted is not None:
        model, weights = _merged(adapted, weights(), config, device, output_dict)
    elif device.type != "meta":
        fill_model(model, device, weights())
    return model.eval(), load_tokenizer(directory), weights


def _merged(adapted: Any, take: Callable[[str], torch.Tensor], config: ModelConfig, device: torch.device,
            output_dict: bool) -> tuple[CLIP, WeightsOpener]:
    """The model of peft's wrapper `adapted` (built on meta) filled on the CPU from `take`, its
    adapters merged, on `device` (on meta: a fresh build of the architecture), and the opener of
    its merged weights."""
    fill_model(adapted.base_model.model, torch.device("cpu"), take)
    model = merge_lora(adapted)
    state = model.state_dict()

    def weights() -> Callable[[str], torch.Tensor]:
        return state.__getitem__
    if device.type == "meta":
        with torch.device("meta"):
            return build_model(config, output_dict=output_dict), weights
    return model.to(device), weights


def read_bundle(location: Location) -> LoadedModel:
    """The checkpoint a bundle, step or run directory (or a bundle's weights file) designates, read
    whole (`read_whole`), with `location.request` (`ema`: the run's EMA weights)."""
    request = location.request
    device = torch.device(request.device)
    path = location.path if location.path.is_dir() else location.path.parent
    return read_whole(lambda: choose_checkpoint(path),
                      lambda bundle_dir, verified: _loaded_bundle(bundle_dir, verified, request.model, device,
                                                                  request.output_dict, request.ema))



def _loaded_bundle(bundle_dir: Path, verified: VerifiedCheckpoint | None, model: Any, device: torch.device,
                   output_dict: bool, ema: bool = False) -> LoadedModel:
    built, tokenizer, weights = _read_bundle(bundle_dir, verified, device, output_dict, ema)
    if model is not None:
        check_architecture(built.config, model, bundle_dir)
    return LoadedModel(built, image_transform(built.config.preprocess, train=False), tokenizer,
                       bundle_dir, device, "bundle", weights if device.type == "meta" else None)

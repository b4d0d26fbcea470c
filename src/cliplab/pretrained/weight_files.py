"""Reading tensors from the files checkpoints come in, without running anything they contain.

- `.safetensors`: `safetensors.torch.load_file`.
- PyTorch zip/pickle files (`.bin`, `.pt`, `.pth`): `torch.load(weights_only=True)`, memory-mapped
  where the file allows it.
- TorchScript archives (OpenAI's CLIP `.pt`): `torch.jit.load`, whose state dict is all that is kept.
- Sharded Hugging Face weights: an index (`*.index.json`, its `weight_map`) and its shard files.
Every failure is a UserError naming the file.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from cliplab.errors import UserError

TORCHSCRIPT_MARKER = "/code/"  # TorchScript archives hold the model's code; torch.save files do not


def is_torchscript(path: Path) -> bool:
    """True for a TorchScript archive (a zip with a code/ directory)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(TORCHSCRIPT_MARKER in name for name in archive.namelist())


def read_torch_file(path: Path) -> Any:
    """The object in a PyTorch file: a TorchScript archive's state dict, or what torch.load(weights_only)
    returns (tensors, dicts and plain values only)."""
    if is_torchscript(path):
        try:
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        except RuntimeError as error:
            raise UserError(f"{path}: a TorchScript archive that torch.jit.load cannot read: {error}") from error
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as error:  # pickle, zip and torch errors have no common base class
        raise UserError(f"{path}: not a PyTorch checkpoint that loads with weights_only=True "
                        f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from error


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as error:
        raise UserError(f"{path}: not a readable safetensors file ({error})") from error


def read_state_file(path: Path) -> Any:
    """A weights file of either kind: safetensors by suffix, else a PyTorch file."""
    return read_safetensors(path) if path.suffix == ".safetensors" else read_torch_file(path)


def read_sharded(index_path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a sharded checkpoint: `index_path` is `*.index.json` with a `weight_map`
    (tensor name -> shard file in the same directory)."""
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise UserError(f"{index_path}: expected a JSON object with a 'weight_map' ({error})") from error
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = index_path.parent / shard
        if not shard_path.is_file():
            raise UserError(f"{index_path} names shard {shard}, which is not in {index_path.parent}")
        state.update(read_state_file(shard_path))
    missing = sorted(set(weight_map) - set(state))
    if missing:
        raise UserError(f"{index_path}: the shards lack {len(missing)} tensors the index lists, e.g. {missing[:3]}")
    return state


def tensors_only(values: Mapping[str, Any], source: Path) -> dict[str, torch.Tensor]:
    """`values` as a state dict: UserError naming `source` and the first non-tensor entry."""
    if not isinstance(values, Mapping):
        raise UserError(f"{source}: expected a state dict (tensor names -> tensors), got {type(values).__name__}")
    for name, value in values.items():
        if not isinstance(value, torch.Tensor):
            raise UserError(f"{source}: entry {name!r} is a {type(value).__name__}, not a tensor")
    return dict(values)


def sample_keys(values: Mapping[str, Any], count: int = 5) -> str:
    """A few keys of a dict, for messages about unrecognised files."""
    keys = list(values)
    shown = ", ".join(repr(key) for key in keys[:count])
    return f"{shown}{', ...' if len(keys) > count else ''} ({len(keys)} entries)"

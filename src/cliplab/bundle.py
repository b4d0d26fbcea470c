"""Save and load a trained model as one directory: `model.safetensors`, `config.json`, `tokenizer.json`.

    save(model, tokenizer, "runs/tiny/bundle")
    model, preprocess, tokenizer = load("runs/tiny/bundle")
    features = model.encode_image(preprocess(pil_image).unsqueeze(0), normalize=True)

Weights are the unwrapped model's state dict (no `module.` / `_orig_mod.` prefixes). Loading checks
every tensor's name and shape against the config before touching the model.

config.json is `ModelConfig.to_dict()` plus `"format_version": FORMAT_VERSION`. A bundle written
before the key existed reads as version 1; one from a newer cliplab is refused with a request to
upgrade. When the layout changes, bump FORMAT_VERSION and convert the older versions in
`read_config`, so that every bundle ever written still loads (`tests/fixtures/bundle_format_1/` is a
committed version-1 bundle that the tests load).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cliplab.data.tokenizer import Tokenizer
from cliplab.data.transforms import ImageTransform, image_transform
from cliplab.models import CLIP, ModelConfig, build_model
from cliplab.models.config import read_json_object

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
BUNDLE_FILES = (WEIGHTS_FILE, CONFIG_FILE, TOKENIZER_FILE)
FORMAT_VERSION = 1
FORMAT_VERSION_KEY = "format_version"


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip DistributedDataParallel (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel) or (
                type(model).__name__ == "DataParallel" and hasattr(model, "module")):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def save(model: nn.Module, tokenizer: Tokenizer, path: str | os.PathLike) -> Path:
    """Write the bundle directory `path` (created if needed; bundle files in it are replaced)."""
    model = unwrap_model(model)
    if not isinstance(model, CLIP) or not isinstance(getattr(model, "config", None), ModelConfig):
        raise ValueError(f"model must be a cliplab model (built by create_model), "
                         f"got {type(model).__name__}")
    if not isinstance(tokenizer, Tokenizer):
        raise ValueError(f"tokenizer must be a cliplab Tokenizer, got {type(tokenizer).__name__}")
    text = model.config.text
    if tokenizer.vocab_size > text.vocab_size:
        raise ValueError(f"tokenizer.vocab_size ({tokenizer.vocab_size}) exceeds the model's "
                         f"text.vocab_size ({text.vocab_size})")
    if tokenizer.context_length > text.context_length:
        raise ValueError(f"tokenizer.context_length ({tokenizer.context_length}) exceeds the model's "
                         f"text.context_length ({text.context_length})")
    if tokenizer.pad_id != text.pad_id:
        raise ValueError(f"tokenizer.pad_id ({tokenizer.pad_id}) differs from the model's "
                         f"text.pad_id ({text.pad_id})")
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    with open(directory / CONFIG_FILE, "w") as handle:
        json.dump({FORMAT_VERSION_KEY: FORMAT_VERSION, **model.config.to_dict()}, handle, indent=2)
        handle.write("\n")
    tokenizer.save(directory / TOKENIZER_FILE)
    return directory


def check_format_version(config_values: dict, source: str) -> int:
    """The `format_version` of a parsed config.json (1 when absent); ValueError naming `source` when
    it is not a positive int or is newer than this cliplab reads."""
    version = config_values.get(FORMAT_VERSION_KEY, 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{source}: {FORMAT_VERSION_KEY} must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{source} has {FORMAT_VERSION_KEY} {version}; this cliplab reads up to "
                         f"{FORMAT_VERSION}: upgrade cliplab to load it")
    return version


def read_config(path: str | os.PathLike) -> ModelConfig:
    """The ModelConfig of a bundle's config.json at `path`, any readable format version."""
    source = str(path)
    values = read_json_object(path, repr(source))
    check_format_version(values, source=repr(source))
    values = {key: value for key, value in values.items() if key != FORMAT_VERSION_KEY}
    try:
        return ModelConfig.from_dict(values)
    except ValueError as error:
        raise ValueError(f"{source!r}: {error}") from error


def check_state_dict(expected: dict[str, torch.Tensor], loaded: dict[str, torch.Tensor],
                     source: str) -> None:
    """Raise ValueError naming the first tensor (in model order) missing, extra or of wrong shape."""
    for name, tensor in expected.items():
        if name not in loaded:
            raise ValueError(f"{source} lacks tensor {name!r} (shape {list(tensor.shape)}) "
                             "that the config requires")
        if tuple(loaded[name].shape) != tuple(tensor.shape):
            raise ValueError(f"{source}: tensor {name!r} has shape {list(loaded[name].shape)} but the "
                             f"config gives {list(tensor.shape)}")
    extra = [name for name in loaded if name not in expected]
    if extra:
        raise ValueError(f"{source} has tensor {extra[0]!r} that the config does not define "
                         f"({len(extra)} unexpected in all)")


def load(path: str | os.PathLike, device: str | torch.device = "cpu"
         ) -> tuple[CLIP, ImageTransform, Tokenizer]:
    """-> (model in eval mode on `device`, eval preprocess `PIL.Image -> Tensor[3, S, S]`, tokenizer)."""
    directory = Path(path)
    if not directory.is_dir():
        raise ValueError(f"bundle path {str(directory)!r} is not a directory")
    for file_name in BUNDLE_FILES:
        if not (directory / file_name).is_file():
            raise ValueError(f"{str(directory)!r} is not a cliplab bundle: missing {file_name} "
                             f"(a bundle holds {', '.join(BUNDLE_FILES)})")
    config = read_config(directory / CONFIG_FILE)
    model = build_model(config)
    state = load_file(str(directory / WEIGHTS_FILE))
    check_state_dict(model.state_dict(), state, source=str(directory / WEIGHTS_FILE))
    model.load_state_dict(state, strict=True)
    model.to(device).eval()
    tokenizer = Tokenizer.from_file(directory / TOKENIZER_FILE)
    preprocess = image_transform(config.preprocess, train=False)
    return model, preprocess, tokenizer

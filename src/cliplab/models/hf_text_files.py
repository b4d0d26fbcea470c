"""Where a Hugging Face text tower's files come from, and the import of the optional `transformers`.

The text model's config.json (its architecture) is the first found of:
  1. config.json in the checkpoint's directory (an open_clip hub directory, or cliplab's export of
     one), when its `model_type` is one open_clip's HF towers know;
  2. `hf_model_name` as a local directory holding config.json (open_clip accepts a path there);
  3. the Hugging Face cache (`cliplab.pretrained.hf_cache`: HF_HUB_CACHE, HF_HOME, ...), for
     `hf_model_name` as a repository id.
The pretrained weights (`hf_model_pretrained`) come from 2. or 3., beside that config.json.
cliplab downloads neither (as it downloads only `hf-hub:` checkpoints): with none of these, a
`MissingModelFilesError` names the files, the places looked in, and how to get them.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

from cliplab.errors import MissingModelFilesError, UserError
from cliplab.file_names import HF_CONFIG_FILE
from cliplab.models.meta_build import torch_initialisers
from cliplab.pretrained.formats.hf import HF_WEIGHT_FILES
from cliplab.pretrained.hf_cache import cached_repo_dir, hub_cache_dir

EXTRA = "pip install 'cliplab[hf]'"


def require_transformers(what: str) -> ModuleType:
    """The `transformers` package; UserError naming `what` needs it and the extra to install.
    Imported with torch's own initialisers in force: its `initialization` module keeps references
    to them, and a first import inside a meta build (which skips them) would keep the no-ops."""
    try:
        with torch_initialisers():
            importlib.import_module("transformers.initialization")
        return importlib.import_module("transformers")
    except ImportError as error:
        raise UserError(f"{what} needs the transformers library, which is not installed: {EXTRA}") from error


def _read_config(path: Path) -> dict | None:
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return values if isinstance(values, dict) else None


def _cache_entry(name: str) -> str:
    return f"{hub_cache_dir()}/models--{name.replace('/', '--')}"


def find_hf_config(name: str, model_types, directory: Path | None, where: str) -> dict:
    """The parsed config.json of text model `name` (see the module docstring); model_types: the
    `model_type`s a checkpoint directory's config.json may have. `where` starts the error."""
    looked = []
    if directory is not None:
        path = directory / HF_CONFIG_FILE
        values = _read_config(path) if path.is_file() else None
        if values is not None and values.get("model_type") in model_types:
            return values
        looked.append(f"{path}" + (f" (model_type {values.get('model_type')!r})" if values is not None else ""))
    local = Path(name).expanduser() / HF_CONFIG_FILE
    if local.is_file():
        values = _read_config(local)
        if values is None:
            raise UserError(f"{where}: {local} is not a JSON object")
        return values
    looked.append(f"a local directory {name}")
    cached = cached_repo_dir(name, (HF_CONFIG_FILE,))
    values = _read_config(cached / HF_CONFIG_FILE) if cached is not None else None
    if values is not None:
        return values
    looked.append(f"the Hugging Face cache ({_cache_entry(name)})")
    raise MissingModelFilesError(
        f"{where}: the text model's {HF_CONFIG_FILE} was not found; looked in {', '.join(looked)}. cliplab does "
        f"not download it: put it in one of these (`huggingface-cli download {name} {HF_CONFIG_FILE}` where a "
        f"network allows fills the cache)")


def find_hf_weights(name: str, where: str) -> Path:
    """The directory holding the pretrained weights of text model `name` (and its config.json):
    `name` itself, or its snapshot in the Hugging Face cache."""
    local = Path(name).expanduser()
    if local.is_dir() and any((local / weights).is_file() for weights in HF_WEIGHT_FILES):
        return local
    cached = cached_repo_dir(name, HF_WEIGHT_FILES)
    if cached is not None:
        return cached
    raise MissingModelFilesError(
        f"{where}: the pretrained weights of {name!r} ({' or '.join(HF_WEIGHT_FILES)}, with {HF_CONFIG_FILE}) were "
        f"not found in a local directory {name} or the Hugging Face cache ({_cache_entry(name)}), and cliplab does "
        f"not download them: put them there (`huggingface-cli download {name}` where a network allows), load a "
        f"checkpoint that holds the text tower, or build it randomly initialised with text.hf_model_pretrained=false")

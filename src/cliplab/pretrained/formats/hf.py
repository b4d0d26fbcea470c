"""Format "hf": a Hugging Face transformers CLIPModel / SiglipModel / Siglip2Model directory
(config.json with `model_type`, the weights, tokenizer files, preprocessor_config.json), what
`from_pretrained` reads and `cliplab export --format hf` writes."""

from __future__ import annotations

import json
from pathlib import Path
from cliplab.file_names import HF_CONFIG_FILE  # one of three config.json (see there)
from cliplab.pretrained.formats.parts import directory_detector, directory_reader, exported_by
from cliplab.pretrained.formats.spec import CheckpointFormat

HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                   "pytorch_model.bin.index.json")


def directory_model_type(directory: Path) -> str | None:
    """config.json's model_type when `directory` holds a Hugging Face model config, else None (also
    for an unreadable config.json: whoever reads it as their own format reports that). The model
    type a cliplab model exports as is `cliplab.pretrained.hf_config.hf_model_type`."""
    config = directory / HF_CONFIG_FILE
    if not config.is_file():
        return None
    try:
        values = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return values.get("model_type") if isinstance(values, dict) else None


def is_hf_directory(directory: Path) -> bool:
    """A Hugging Face model directory (an open_clip hub directory with a config.json is the hub's)."""
    from cliplab.pretrained.formats.open_clip_hub import is_hub_directory

    return not is_hub_directory(directory) and directory_model_type(directory) is not None


FORMAT = CheckpointFormat(
    name="hf", architecture="carried",
    summary=f"a Hugging Face directory: {HF_CONFIG_FILE} with model_type 'clip' or 'siglip' and "
            f"{', '.join(HF_WEIGHT_FILES)}",
    detect=directory_detector(is_hf_directory), read=directory_reader("read_hf_directory"),
    export=exported_by("hf", check="check_hf_export", write="export_hf"),
)

"""Format "open_clip_hub": an open_clip hub directory (what `open_clip.create_model("hf-hub:...")`
reads and `cliplab export --format open_clip` writes): open_clip_config.json (`model_cfg`,
`preprocess_cfg`) and the first of HUB_WEIGHT_FILES (a weights file named inside it reads it too)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cliplab.pretrained.formats.spec import CheckpointFormat, ExportForm, LoadedModel, Location

OPEN_CLIP_CONFIG = "open_clip_config.json"
# open_clip's own lookup order for a hub directory's weights.
HUB_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                    "open_clip_pytorch_model.bin")


def is_hub_directory(directory: Path) -> bool:
    return (directory / OPEN_CLIP_CONFIG).is_file()


def detect(location: Location) -> bool:
    return location.path.exists() and is_hub_directory(location.directory)


def read(location: Location) -> LoadedModel:
    from cliplab.pretrained.loaders import loaded_from_foreign, read_open_clip_hub

    weights = None if location.path.is_dir() else location.path
    return loaded_from_foreign(read_open_clip_hub(location.directory, weights), location.request)


def check(model: Any, tokenizer: Any) -> None:
    from cliplab.pretrained.export import check_open_clip_export

    check_open_clip_export(model, tokenizer)


def write(model: Any, tokenizer: Any, directory: Path) -> list[str]:
    from cliplab.pretrained.export import export_open_clip

    return export_open_clip(model, model.config, tokenizer, directory)


FORMAT = CheckpointFormat(
    name="open_clip_hub", architecture="carried",
    summary=f"an open_clip hub directory: {OPEN_CLIP_CONFIG} with {', '.join(HUB_WEIGHT_FILES)}",
    detect=detect, read=read, export=ExportForm(name="open_clip", check=check, write=write),
)

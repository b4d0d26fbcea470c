"""Format "open_clip_hub": an open_clip hub directory (what `open_clip.create_model("hf-hub:...")`
reads and `cliplab export --format open_clip` writes): open_clip_config.json (`model_cfg`,
`preprocess_cfg`) and the first of HUB_WEIGHT_FILES (a weights file named inside it reads it too)."""

from __future__ import annotations

from pathlib import Path

from cliplab.pretrained.formats.parts import directory_detector, directory_reader, exported_by
from cliplab.pretrained.formats.spec import CheckpointFormat

OPEN_CLIP_CONFIG = "open_clip_config.json"
# open_clip's own lookup order for a hub directory's weights.
HUB_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                    "open_clip_pytorch_model.bin")


def is_hub_directory(directory: Path) -> bool:
    return (directory / OPEN_CLIP_CONFIG).is_file()


FORMAT = CheckpointFormat(
    name="open_clip_hub", architecture="carried",
    summary=f"an open_clip hub directory: {OPEN_CLIP_CONFIG} with {', '.join(HUB_WEIGHT_FILES)}",
    detect=directory_detector(is_hub_directory), read=directory_reader("read_open_clip_hub"),
    export=exported_by("open_clip", check="check_open_clip_export", write="export_open_clip",
                       options=("hf_tokenizer_name",)),
)

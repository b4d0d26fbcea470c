"""Which checkpoint format a path holds, by its files (never by running anything).

    cliplab bundle / step / run dir   config.json (a cliplab ModelConfig) + model.safetensors (+
                                      tokenizer files); or a run's checkpoints/latest (cliplab.bundle)
    open_clip hub directory           open_clip_config.json + the first of HUB_WEIGHT_FILES
    Hugging Face directory            config.json with model_type clip / siglip + HF_WEIGHT_FILES
    a weights file                    inside one of the directories above: that directory; else
                                      read: an OpenAI CLIP .pt (TorchScript or state dict with
                                      input_resolution / context_length / vocab_size), or an
                                      open_clip training checkpoint / state dict, or a cliplab
                                      model's state dict (`cliplab_keys`), with the architecture
                                      named (`model=`)
    hf-hub:org/repo, local-dir:PATH   open_clip's prefixes: a Hub download / a local directory
    an open_clip pretrained tag       with `model=` naming its architecture (`tags`): the Hub
                                      repository the tag names, through the Hugging Face cache
"""

from __future__ import annotations

import json
from pathlib import Path

from cliplab.errors import UserError

OPEN_CLIP_CONFIG = "open_clip_config.json"
HF_CONFIG = "config.json"
# open_clip's own lookup order for a hub directory's weights.
HUB_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                    "open_clip_pytorch_model.bin")
HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                   "pytorch_model.bin.index.json")
HF_HUB_PREFIX = "hf-hub:"
LOCAL_DIR_PREFIX = "local-dir:"

ACCEPTED_FORMATS = (
    "a cliplab bundle (config.json + model.safetensors + tokenizer files), a training step directory, "
    "or a run directory with checkpoints/latest",
    f"an open_clip hub directory: {OPEN_CLIP_CONFIG} with {', '.join(HUB_WEIGHT_FILES)}",
    "an open_clip training checkpoint (epoch_K.pt, a dict with 'state_dict') or state-dict file, with "
    "the architecture named: load(path, model='ViT-B-32')",
    "an OpenAI CLIP .pt (TorchScript archive or state dict with input_resolution, context_length, vocab_size)",
    f"a Hugging Face directory: {HF_CONFIG} with model_type 'clip' or 'siglip' and "
    f"{', '.join(HF_WEIGHT_FILES)}",
    f"the prefixes {HF_HUB_PREFIX}org/repo (the Hugging Face cache, else a download) and {LOCAL_DIR_PREFIX}PATH",
    "a cliplab model's state dict (torch.save(model.state_dict()) or safetensors), with the architecture "
    "named: load(path, model='tiny-vit')",
    "an open_clip pretrained tag with its model: load('laion2b_s34b_b79k', model='ViT-B-32') "
    "(cliplab.list_pretrained())",
)


def accepted_formats() -> str:
    """The accepted formats as one line, for error messages."""
    return "accepted: " + "; ".join(f"({index}) {text}" for index, text in enumerate(ACCEPTED_FORMATS, 1))


def hf_model_type(directory: Path) -> str | None:
    """config.json's model_type when `directory` holds a Hugging Face model config, else None (also
    for an unreadable config.json: whoever reads it as their own format reports that)."""
    config = directory / HF_CONFIG
    if not config.is_file():
        return None
    try:
        values = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return values.get("model_type") if isinstance(values, dict) else None


def directory_format(directory: Path) -> str | None:
    """"open_clip_hub" or "hf" for a foreign checkpoint directory, else None."""
    if (directory / OPEN_CLIP_CONFIG).is_file():
        return "open_clip_hub"
    if hf_model_type(directory) is not None:
        return "hf"
    return None


def first_existing(directory: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (directory / name).is_file():
            return directory / name
    return None


def strip_local_dir(path: str) -> Path:
    """`local-dir:PATH` -> PATH (which must be a directory)."""
    directory = Path(path[len(LOCAL_DIR_PREFIX):])
    if not str(directory) or not directory.is_dir():
        raise UserError(f"{path}: {LOCAL_DIR_PREFIX} must name an existing directory")
    return directory


def download_hf_hub(spec: str) -> Path:
    """`hf-hub:org/repo` -> the local snapshot directory: the Hugging Face cache first (offline), else
    downloaded into it; neither: a UserError naming the repository and the cache directory."""
    from cliplab.pretrained.hf_cache import snapshot_dir

    return snapshot_dir(spec[len(HF_HUB_PREFIX):], where=spec)

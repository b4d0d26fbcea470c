"""open_clip's location prefixes: `hf-hub:org/repo` (the Hugging Face cache, else a download) and
`local-dir:PATH` (a directory); what they name is then read as any path."""

from __future__ import annotations

from pathlib import Path

from cliplab.errors import UserError
from cliplab.pretrained.formats.spec import CheckpointFormat

HF_HUB_PREFIX = "hf-hub:"
LOCAL_DIR_PREFIX = "local-dir:"


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


def resolve(text: str) -> Path | None:
    if text.startswith(HF_HUB_PREFIX):
        return download_hf_hub(text)
    if text.startswith(LOCAL_DIR_PREFIX):
        return strip_local_dir(text)
    return None


FORMAT = CheckpointFormat(
    name="prefixes",
    summary=f"the prefixes {HF_HUB_PREFIX}org/repo (the Hugging Face cache, else a download) and {LOCAL_DIR_PREFIX}PATH",
    resolve=resolve,
)

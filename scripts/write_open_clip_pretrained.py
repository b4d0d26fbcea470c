"""Write src/cliplab/pretrained/open_clip_pretrained.json: open_clip's table of pretrained tags, as data.

Run with open_clip_torch==3.3.0 installed (scripts/setup.sh puts it in build/test-oracles; no
torchvision needed: only `open_clip/pretrained.py` is imported, not the package's `__init__`):

    python scripts/write_open_clip_pretrained.py

For every (model name, tag) of open_clip's `list_pretrained()`, in its order (the `-quickgelu`
copies open_clip derives included), the facts cliplab uses: the Hugging Face Hub location
(`hf_hub`, "org/name/" or "org/name/file", as open_clip writes it), the preprocessing (mean, std,
interpolation, resize_mode) and whether the weights were trained with QuickGELU. Download URLs
are left out: cliplab reads weights through the Hugging Face cache only.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "src" / "cliplab" / "pretrained" / "open_clip_pretrained.json"
ORACLES = ROOT / "build" / "test-oracles"
KEPT = ("hf_hub", "mean", "std", "interpolation", "resize_mode", "quick_gelu")


def open_clip_pretrained_module():
    """open_clip's `pretrained` module, imported under a bare package (its `__init__` needs torchvision)."""
    if ORACLES.is_dir():
        sys.path.insert(0, str(ORACLES))
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("open_clip_torch is not installed: pip install --no-deps open_clip_torch==3.3.0")
    package = types.ModuleType("open_clip")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["open_clip"] = package
    return importlib.import_module("open_clip.pretrained")


def main() -> None:
    pretrained = open_clip_pretrained_module()
    table: dict[str, dict[str, dict]] = {}
    for model, tag in pretrained.list_pretrained():
        config = pretrained.get_pretrained_cfg(model, tag)
        entry = {key: config[key] for key in KEPT if key in config}
        entry["mean"], entry["std"] = list(entry["mean"]), list(entry["std"])
        entry["quick_gelu"] = bool(config.get("quick_gelu", False))
        table.setdefault(model, {})[tag] = entry
    version = sys.modules["open_clip.version"].__version__
    lines = [f"  {json.dumps(model)}: {json.dumps(tags)}" for model, tags in table.items()]
    body = ",\n".join(lines)
    OUTPUT.write_text(f'{{"open_clip_version": {json.dumps(version)},\n "pretrained": {{\n{body}\n}}}}\n')
    count = sum(len(tags) for tags in table.values())
    print(f"wrote {count} tags of {len(table)} models to {OUTPUT}")


if __name__ == "__main__":
    main()

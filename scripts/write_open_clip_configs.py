"""Write src/cliplab/models/open_clip_configs.json: open_clip's built-in model configs, as data.

Run with open_clip_torch==3.3.0 installed (no torchvision needed: the JSON files are read straight
from the installed package, not through `import open_clip`):

    python scripts/write_open_clip_configs.py

Keeps all 144 of open_clip 3.3.0's configs, those with timm image towers
(`vision_cfg.timm_model_name`) or Hugging Face text towers (`text_cfg.hf_model_name`) included. The
numbers are open_clip's, unchanged; cliplab reads them with `cliplab.models.open_clip_config`, the
same converter that reads an `open_clip_config.json` of a hub directory, and lists (and builds) the
names whose tower families are registered (`cliplab.models.families`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from pathlib import Path

OUTPUT = Path(__file__).resolve().parent.parent / "src" / "cliplab" / "models" / "open_clip_configs.json"


def builtin_configs(config_dir: Path) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(config_dir.glob("*.json"))}


def main() -> None:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("open_clip_torch is not installed: pip install --no-deps open_clip_torch==3.3.0")
    config_dir = Path(spec.submodule_search_locations[0]) / "model_configs"
    configs = builtin_configs(config_dir)
    version = importlib.metadata.version("open_clip_torch")
    lines = [f"  {json.dumps(name)}: {json.dumps(config, sort_keys=True)}" for name, config in configs.items()]
    body = ",\n".join(lines)
    OUTPUT.write_text(f'{{"open_clip_version": {json.dumps(version)},\n "model_configs": {{\n{body}\n}}}}\n')
    print(f"wrote {len(configs)} configs to {OUTPUT}")


if __name__ == "__main__":
    main()

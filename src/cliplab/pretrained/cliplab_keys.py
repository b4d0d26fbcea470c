"""cliplab's own state-dict names as a checkpoint format: what `torch.save(model.state_dict(), path)`
(or `safetensors.torch.save_file`) writes for a cliplab model, read back with the architecture named
(`cliplab.load(path, model=NAME)`, `--model NAME --pretrained path`).

The names need no conversion (one identity rule); the layout is recognised by the towers' prefixes,
which no foreign format uses (open_clip: `visual.` / `transformer.`, Hugging Face: `vision_model.` /
`text_model.`).
"""

from __future__ import annotations

from collections.abc import Iterable

from cliplab.pretrained.key_maps import KeyRule, rule

CLIPLAB_TOWER_PREFIXES = ("vision_tower.", "text_tower.")
CLIPLAB_RULES: tuple[KeyRule, ...] = (rule(r"(.+)", "{0}"),)


def is_cliplab_layout(names: Iterable[str]) -> bool:
    """Whether state-dict `names` are cliplab's own (a tower under cliplab's prefix)."""
    return any(str(name).startswith(CLIPLAB_TOWER_PREFIXES) for name in names)

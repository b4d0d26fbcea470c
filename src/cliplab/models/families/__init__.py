"""The tower-family registry: every kind of image or text tower cliplab builds, one `TowerFamily`
each (see `spec` for what a family holds), in one table, `TOWER_FAMILIES`.

Everything that depends on a tower's kind asks this table: the config dataclass of a section
(`ModelConfig.from_dict`), the module (`build_tower`), open_clip's configs and names
(`open_clip_family`, used by `cliplab.models.open_clip_config`), the tensor names
(`cliplab.pretrained.open_clip_keys` / `hf_keys`), the locking groups (`CLIP.lock_image_tower`)
and the FSDP2 units (`CLIP.fsdp_units`, which `cliplab.train.parallel.fsdp` shards by).

How to add a family (docs/models.md says it at length): write one module in this package that
defines the config dataclass (with a `kind` field), the tower module (or imports it from
`cliplab.models.towers`), the open_clip reader/writer and key rules, and ends with
`FAMILY = TowerFamily(...)` (a timm tower's: `timm_trunk.timm_family(...)`); then add that `FAMILY`
to `TOWER_FAMILIES` below. A family open_clip configs name but nobody has written yet is refused by
`open_clip_family` with one line naming it (`MISSING_FAMILIES`).

Last, `python scripts/write_docs_tables.py` rewrites the docs' generated table from this one (a
test keeps them equal), and the registry sweep (tests/test_models_families.py, `SWEEP`) gets a row:
the small settings one model of the family is built with.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from cliplab.errors import UnsupportedArchitectureError
from cliplab.models.families import (conv, hf_text, naflex_vit, resnet, text_transformer, timm_convnext,
                                     timm_eva, timm_fastvit, timm_swin, timm_vit, timm_vit_relpos, timm_vitamin, vit)
from cliplab.models.families.spec import SIDES, OpenClipContext, OpenClipForm, PositionsResize, TowerFamily
from cliplab.models.timm_models import timm_family_kind, timm_model
from cliplab.registry_index import index_entries

TOWER_FAMILIES: tuple[TowerFamily, ...] = (
    vit.FAMILY,
    conv.FAMILY,
    resnet.FAMILY,
    timm_vit.FAMILY,
    timm_vit_relpos.FAMILY,
    timm_eva.FAMILY,
    timm_fastvit.FAMILY,
    timm_vitamin.FAMILY,
    naflex_vit.FAMILY,
    timm_convnext.FAMILY,
    timm_swin.FAMILY,
    text_transformer.FAMILY,
    hf_text.FAMILY,
)

# The kind a config section without a `kind` key has (configs written before the registry).
DEFAULT_KINDS = {"vision": "vit", "text": "transformer"}
# Families open_clip 3.3.0's configs need that are not in TOWER_FAMILIES yet: kind -> what builds it.
MISSING_FAMILIES: dict[str, str] = {}

_BY_KIND = index_entries(TOWER_FAMILIES, lambda family: family.kind, "TOWER_FAMILIES")


def family_kinds(side: str) -> tuple[str, ...]:
    """The registered kinds of image ("vision") or text ("text") towers, in table order."""
    return tuple(family.kind for family in TOWER_FAMILIES if family.side == side)


def tower_family(side: str, kind: Any) -> TowerFamily:
    """The family of `kind` on `side`; ValueError "<side>.kind must be one of (...)" otherwise."""
    family = _BY_KIND.get(kind) if isinstance(kind, str) else None
    if family is None or family.side != side:
        raise ValueError(f"{side}.kind must be one of {family_kinds(side)}, got {kind!r}")
    return family


def family_of(config: Any) -> TowerFamily:
    """The family whose config `config` is (by its `kind`)."""
    family = _BY_KIND.get(getattr(config, "kind", None))
    if family is None or not isinstance(config, family.config):
        raise ValueError(f"not the config of a registered tower family: {type(config).__name__} "
                         f"with kind={getattr(config, 'kind', None)!r}")
    return family


def check_tower_config(side: str, config: Any) -> None:
    """ValueError unless `config` is the config of a registered `side` family."""
    kind = getattr(config, "kind", None)
    family = _BY_KIND.get(kind) if isinstance(kind, str) else None
    if family is None or family.side != side or not isinstance(config, family.config):
        classes = sorted({family.config.__name__ for family in TOWER_FAMILIES if family.side == side})
        raise ValueError(f"{side} must be the config of a {side} tower family ({', '.join(classes)}), "
                         f"got {type(config).__name__}")


def build_tower(config: Any) -> nn.Module:
    """The tower module of `config`, freshly initialised."""
    return family_of(config).build(config)


def open_clip_family(side: str, section: dict) -> TowerFamily:
    """The registered family whose open_clip reader takes `section` (a `vision_cfg` or `text_cfg`);
    UnsupportedArchitectureError naming the family it needs when none does."""
    for family in TOWER_FAMILIES:
        if family.side == side and family.open_clip is not None and family.open_clip.recognises(section):
            return family
    raise UnsupportedArchitectureError(_missing_family_message(section))


def _missing_family_message(vision: dict) -> str:
    """Why no family takes a `vision_cfg` (every text_cfg has one: "transformer" or "hf_text")."""
    name = vision.get("timm_model_name")
    kind = timm_family_kind(name)
    if kind is None:
        return (f"vision_cfg.timm_model_name={name!r} is not a timm model cliplab knows (it knows those of "
                f"open_clip 3.3.0's built-in configs: cliplab/models/timm_model_args.json)")
    return (f"vision_cfg.timm_model_name={name!r} (timm's {timm_model(name)['class']}) needs the timm tower "
            f"family '{kind}', which cliplab does not build yet")


def families_table() -> str:
    """The registered families as the Markdown table docs/models.md shows (a test keeps them equal)."""
    lines = ["| kind | side | config | module | open_clip | Hugging Face | what it is | at another input size |",
             "|---|---|---|---|---|---|---|---|"]
    for family in TOWER_FAMILIES:
        resize = family.resize_positions.summary if family.resize_positions else "no tensor depends on the size"
        lines.append(f"| `{family.kind}` | {family.side} | `{family.config.__name__}` | `{family.build.__name__}` | "
                     f"{'yes' if family.open_clip else 'no'} | {'yes' if family.hf_rules else 'no'} | "
                     f"{family.summary} | {resize} |")
    if not MISSING_FAMILIES:
        return "\n".join([*lines, "", "Every family open_clip 3.3.0's built-in configs name is registered."]) + "\n"
    lines += ["", "Families open_clip's configs name that are not registered yet (their names are refused "
                  "naming them):", ""]
    lines += [f"- `{kind}`: {what}" for kind, what in MISSING_FAMILIES.items()]
    return "\n".join(lines) + "\n"


__all__ = ["DEFAULT_KINDS", "MISSING_FAMILIES", "OpenClipContext", "OpenClipForm", "PositionsResize", "SIDES",
           "TOWER_FAMILIES", "TowerFamily", "build_tower", "check_tower_config", "families_table", "family_kinds",
           "family_of", "open_clip_family", "tower_family"]

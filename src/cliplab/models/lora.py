"""LoRA adapters on a cliplab model, through the `peft` library: which layers, adding, merging, saving.

peft's LoRA replaces each adapted nn.Linear / nn.Conv2d, in place, by a layer that keeps the
original as `base_layer` and adds a low-rank pair, `lora_A` (in -> r) then `lora_B` (r -> out,
zero at the start), scaled by alpha / r: y = base(x) + (alpha / r) * B(A(dropout(x))). cliplab's
self-attention holds q, k and v in one fused `qkv` linear (`models.layers.attention`), an ordinary
nn.Linear that peft adapts as it is: one pair of rank r spans the three projections (a rank-r
update of the [3W, W] weight), where a model with separate q, k, v layers gets three.

Targets are module-name suffixes, peft's `target_modules` form: a layer is adapted when its name
inside a tower equals a target or ends with "." + target, and it is an nn.Linear or nn.Conv2d
(which also tells the convolution `0` of a conv tower's `ConvNormAct` from the block `0` holding
it). Only the towers are searched (`vision_tower`, `text_tower`); their families name the defaults
(`TowerFamily.lora_targets`). `LoraSpec.modules` holds the full names found: what peft is given, and
what a bundle's `lora.json` keeps, so a model is adapted again exactly as it was.

State dict of an adapted model: an adapted layer's tensors move to `<layer>.base_layer.*`, its pair
is `<layer>.lora_A.default.weight` and `<layer>.lora_B.default.weight`. `cliplab.save` of such a
model writes `lora.json` beside the weights (`write_lora_spec`); `cliplab.load` adds the same
adapters to the model it builds, fills it, and merges them (`merge_lora`): a plain model of the
bundle's architecture, W' = W + (alpha / r) B A.

`peft` is the optional extra `cliplab[peft]`, imported when adapters are added or merged.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from cliplab.errors import UserError
from cliplab.models.families import family_of

LORA_FILE = "lora.json"
ADAPTER_NAME = "default"  # peft's name of a model's only adapter
TOWERS = {"vision": "vision_tower", "text": "text_tower"}
ADAPTABLE_LAYERS = (nn.Linear, nn.Conv2d)
_ADAPTER_PARTS = (".lora_A.", ".lora_B.")


class MissingPeftError(UserError):
    """LoRA was asked for without the peft package installed."""


@dataclass(frozen=True, kw_only=True)
class LoraSpec:
    """The adapters of a model: rank r, alpha (the update is scaled by alpha / r), the dropout on
    the adapters' input, and the full names of the adapted layers (in module order)."""

    rank: int
    alpha: float
    dropout: float
    modules: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank <= 0:
            raise ValueError(f"LoRA rank must be a positive integer, got {self.rank!r}")
        if not isinstance(self.alpha, (int, float)) or not math.isfinite(self.alpha) or self.alpha <= 0:
            raise ValueError(f"LoRA alpha must be a finite number > 0, got {self.alpha!r}")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout!r}")
        if not self.modules or not all(isinstance(name, str) and name for name in self.modules):
            raise ValueError(f"LoRA modules must be a non-empty list of module names, got {self.modules!r}")

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["modules"] = list(self.modules)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "LoraSpec":
        return cls(rank=values["rank"], alpha=values["alpha"], dropout=values["dropout"],
                   modules=tuple(values["modules"]))


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def default_targets(model: nn.Module, side: str) -> tuple[str, ...]:
    """The suffixes the family of `model`'s `side` ("vision" / "text") tower adapts by default."""
    config = getattr(model.config, side)
    return tuple(family_of(config).lora_targets(config))


def target_modules(model: nn.Module, sides: Sequence[str], targets: Sequence[str] | None = None) -> tuple[str, ...]:
    """The full names of the layers to adapt in the towers of `sides`: those matching `targets`
    (suffixes; None: each tower family's defaults). ValueError naming a given target that matches
    no adaptable layer of those towers, or when nothing matches at all."""
    found: list[str] = []
    matched: set[str] = set()
    for side in sides:
        tower_name = TOWERS[side]
        names = targets if targets is not None else default_targets(model, side)
        for name, module in getattr(model, tower_name).named_modules():
            hits = [target for target in names if _matches(name, target)]
            if hits and isinstance(module, ADAPTABLE_LAYERS):
                found.append(f"{tower_name}.{name}")
                matched.update(hits)
    if targets is not None:
        unmatched = [target for target in targets if target not in matched]
        if unmatched:
            raise ValueError(f"LoRA targets {unmatched} match no nn.Linear or nn.Conv2d in the "
                             f"{' and '.join(TOWERS[side] for side in sides)} (names end with e.g. "
                             f"{', '.join(default_targets(model, sides[0])[:4])})")
    if not found:
        raise ValueError(f"no layer of the {' and '.join(TOWERS[side] for side in sides)} is one LoRA adapts")
    return tuple(found)


def _peft() -> Any:
    try:
        import peft
    except ImportError:
        raise MissingPeftError("LoRA needs the peft package: pip install 'cliplab[peft]'") from None
    return peft


def add_lora(model: nn.Module, spec: LoraSpec) -> Any:
    """Adapt `model` in place as `spec` says (peft's `get_peft_model`); returns peft's wrapper, whose
    `merge_lora` gives the merged model. The new pairs are initialised by peft (A Kaiming-uniform from
    the global generator, B zero) on the device of the layers they adapt (meta included). peft
    leaves only the adapters trainable."""
    peft = _peft()
    config = peft.LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                             target_modules=list(spec.modules), bias="none")
    return peft.get_peft_model(model, config, adapter_name=ADAPTER_NAME)


def merge_lora(adapted: Any) -> nn.Module:
    """The model of peft's wrapper `adapted` with every pair merged into its layer's weight (W +
    (alpha / r) B A) and the layers back in their original form: a plain cliplab model."""
    return adapted.merge_and_unload()


def is_adapter_name(name: str) -> bool:
    """Whether state-dict entry `name` belongs to a LoRA pair."""
    return any(part in name for part in _ADAPTER_PARTS)


def base_name(name: str) -> str:
    """The name entry `name` of an adapted model has in the model without adapters."""
    return name.replace(".base_layer.", ".")


def lora_spec_of(model: nn.Module) -> LoraSpec | None:
    """The adapters `model` carries (peft's LoRA layers found in it), None without any."""
    layers = [(name, module) for name, module in model.named_modules()
              if hasattr(module, "lora_A") and hasattr(module, "base_layer") and ADAPTER_NAME in module.lora_A]
    if not layers:
        return None
    first = layers[0][1]
    dropout = first.lora_dropout[ADAPTER_NAME]
    return LoraSpec(rank=first.r[ADAPTER_NAME], alpha=first.lora_alpha[ADAPTER_NAME],
                    dropout=dropout.p if isinstance(dropout, nn.Dropout) else 0.0,
                    modules=tuple(name for name, _ in layers))


def write_lora_spec(spec: LoraSpec | None, directory: str | Path) -> None:
    """`lora.json` in `directory` for a model with adapters; for `spec` None, none (one left by an
    earlier bundle in the directory is removed: the weights written with it are replaced)."""
    path = Path(directory) / LORA_FILE
    if spec is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(json.dumps(spec.to_dict(), indent=2) + "\n")


def read_lora_spec(directory: str | Path) -> LoraSpec | None:
    """The `lora.json` of a bundle directory (None without one); UserError naming the file when it
    is not the description `write_lora_spec` writes."""
    path = Path(directory) / LORA_FILE
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        return LoraSpec.from_dict(values)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not the LoRA description cliplab writes ({error})") from None

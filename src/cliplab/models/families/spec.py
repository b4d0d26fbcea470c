"""What a tower family is: one `TowerFamily` record holding everything cliplab does with a kind of
tower (config, module, open_clip conversion, tensor names, FSDP units, locking).

The contracts a family's parts keep:

- config: a keyword-only dataclass validated in `__post_init__` (ValueError naming the dotted key,
  e.g. "vision.width must be ..."), with a `kind` field defaulting to the family's kind. `to_dict`
  of the model is `dataclasses.asdict`, so every field must be JSON data. An image tower's config
  has `image_size` (int, square images), `projection` ("linear", "linear_bias" or "none": how
  `CLIP.image_projection` maps the pooled vector into the shared latent) and `output_width` (the
  pooled vector's width); a text tower's has `context_length`, `vocab_size`, `width`, `pad_id`,
  `causal` and `projection`.
- module (`build(config)`): an image tower has `forward(images [B, 3, S, S]) -> pooled [B, W_out]`,
  `forward_tokens(images) -> [B, P, W_tok]`, `forward_features(images) -> (pooled, tokens)`,
  `width` (= W_out), `token_width` (= W_tok) and `set_grad_checkpointing(enable)`; a text tower
  `forward(tokens [B, T]) -> [B, W]`, `forward_tokens(tokens) -> [B, T, W]`,
  `forward_features(tokens) -> (pooled, hidden, is_real)`, `width`, `set_grad_checkpointing`. The
  projection into the shared latent is the model's (`image_projection`, `text_projection`), not
  the tower's.
- `lock_groups(tower) -> [[module or parameter, ...], ...]`: the tower's parameter groups from
  input to output, as open_clip's `lock_image_tower(unlocked_groups)` counts them; the model adds
  its projection to the last group when `projection_locked(config)` says open_clip's lock freezes
  it (the default: open_clip's own towers lock their projection, as a group of its own:
  `towers.locking.open_clip_layout` ends their groups with an empty one for it). A family
  whose open_clip lock leaves the projection trainable says False: open_clip's `TimmModel.lock`
  freezes only `visual.trunk`, so `visual.head` keeps training (timm towers), as does
  `HFTextEncoder.lock` its pooler's projection.
- `fsdp_units(tower) -> [module, ...]`: the submodules that become FSDP2 units of their own
  (residual blocks, stages), input to output; the rest of the tower stays in the root unit
  (`each_transformer_block`, `each_stage`: the two common choices).
- `lora_targets(config) -> (name, ...)`: the layers LoRA adapts by default (`cliplab.models.lora`), as
  module-name suffixes inside the tower (peft's `target_modules` form): attention q/k/v and output,
  MLP in and out where the tower has them, the convolutions of a conv tower. The default,
  `TRANSFORMER_LORA_TARGETS`, names cliplab's own transformer blocks (`layers.attention`,
  `layers.blocks`), which every ViT-like family builds on.
- `open_clip` (`OpenClipForm`, None where open_clip has no such tower): `recognises(section)` says
  whether an open_clip `vision_cfg` / `text_cfg` describes this family; `read(section, context)`
  makes the config (`UnsupportedArchitectureError` naming the key it cannot build);
  `write(config, context)` gives the section back (`UnsupportedArchitectureError` when open_clip
  cannot represent the config); `activation(config)` is the activation the tower takes from
  open_clip's top-level `quick_gelu` flag ("gelu" / "quick_gelu"; None for a tower that ignores the
  flag); `rules(config, prefix)` the `KeyRule`s between cliplab's names (`vision_tower.*` and
  `image_projection.*`, or `text_tower.*` and `text_projection.*`) and open_clip's under `prefix`
  ("visual." for an image tower; "" or "text." for a text tower). `custom_text`: open_clip builds
  this text tower only inside its `CustomTextCLIP` (or CoCa), under "text." (Hugging Face towers).
  `side_files(config)`: JSON files (name -> content) an open_clip export writes beside the model
  for the tower's architecture, which the section only names (a Hugging Face model's config.json;
  `read` finds it there through `OpenClipContext.directory`).
- `hf_rules(config, model_type)` (None where transformers has no such tower): the same for the
  tower's part of a transformers `CLIPModel` / `SiglipModel` (model_type "clip" / "siglip").
- `resize_positions` (`PositionsResize`, None where no tensor of the tower depends on its input
  size): how pretrained weights follow another input size (`--force-image-size`,
  `--force-context-length`; `cliplab.models.resized_model`). `rule(state, old_config, new_config,
  sequence_resize)` gets the tower's state-dict entries whose shapes differ between the two configs
  (tower-local names, e.g. "position_embedding") and returns them at the new config's shapes;
  `sequence_resize(positions [L, W], N) -> [N, W]` is the run's rule for 1-D text positions (a text
  tower uses it, an image tower ignores it). A rule raises ValueError for a size it cannot serve,
  saying which sizes it can. An entry that changes shape and that no rule returns is refused naming
  it. `summary`: what the rule does, for docs/models.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cliplab.models.key_rules import KeyRule
from cliplab.models.towers.locking import GroupItem

SIDES = ("vision", "text")
# cliplab's attention (fused `qkv`, or `query` + `key_value` for cross-attention, and `out`) and MLP
# (`fc` in, `proj` out) layers, as they sit in its blocks.
TRANSFORMER_LORA_TARGETS = ("attn.qkv", "attn.query", "attn.key_value", "attn.out", "mlp.fc", "mlp.proj")


def transformer_lora_targets(config: Any) -> tuple[str, ...]:
    """The default `lora_targets`: TRANSFORMER_LORA_TARGETS whatever the config."""
    return TRANSFORMER_LORA_TARGETS


@dataclass(frozen=True, kw_only=True)
class OpenClipContext:
    """What an open_clip section is read or written with, beyond the section itself: the model's
    `embed_dim` and its top-level `quick_gelu` flag; where the checkpoint's files lie (`directory`,
    None for a config without a checkpoint: a tower whose architecture lives in a file of its own,
    a Hugging Face text model's config.json, looks there first) and whether the weights come from
    that checkpoint (`weights_from_checkpoint`: a tower then starts from nothing else, as open_clip
    turns off `hf_model_pretrained` / `timm_model_pretrained` when it loads a checkpoint)."""

    embed_dim: int
    quick_gelu: bool = False
    directory: Path | None = None
    weights_from_checkpoint: bool = False

    @property
    def activation(self) -> str:
        """The activation open_clip's own towers use under the flag."""
        return "quick_gelu" if self.quick_gelu else "gelu"


@dataclass(frozen=True, kw_only=True)
class OpenClipForm:
    """A family's open_clip side (see the module docstring for each callable's contract)."""

    recognises: Callable[[dict], bool]
    read: Callable[[dict, OpenClipContext], Any]
    write: Callable[[Any, OpenClipContext], dict]
    activation: Callable[[Any], str | None]
    rules: Callable[[Any, str], list[KeyRule]]
    custom_text: bool = False
    side_files: Callable[[Any], dict[str, dict]] = lambda config: {}


# (positions [L, W], new length N) -> [N, W]: how the run lengthens or shortens a text tower's positions.
SequenceResize = Callable[[torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True, kw_only=True)
class PositionsResize:
    """A family's rule for its size-dependent tensors at another input size (module docstring)."""

    rule: Callable[[dict[str, torch.Tensor], Any, Any, SequenceResize], dict[str, torch.Tensor]]
    summary: str


@dataclass(frozen=True, kw_only=True)
class TowerFamily:
    """One kind of tower, everything cliplab does with it in one record (see the module docstring).

    kind: the config's `kind` (unique over both sides). side: "vision" or "text". summary: one
    line for docs/models.md. config: its config dataclass. build: config -> the tower module.
    projection_locked: config -> whether locking the tower locks the model's projection with it.
    lora_targets: config -> the module-name suffixes LoRA adapts by default.
    resize_positions: its weights at another input size (None: nothing depends on the size).
    """

    kind: str
    side: str
    summary: str
    config: type
    build: Callable[[Any], nn.Module]
    lock_groups: Callable[[nn.Module], list[list[GroupItem]]]
    fsdp_units: Callable[[nn.Module], list[nn.Module]]
    open_clip: OpenClipForm | None = None
    hf_rules: Callable[[Any, str], list[KeyRule]] | None = None
    projection_locked: Callable[[Any], bool] = lambda config: True
    lora_targets: Callable[[Any], tuple[str, ...]] = transformer_lora_targets
    resize_positions: PositionsResize | None = None

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"TowerFamily {self.kind!r}: side must be one of {SIDES}, got {self.side!r}")


def each_transformer_block(tower: nn.Module) -> list[nn.Module]:
    """The `fsdp_units` of a tower whose `transformer` is a `BlockStack`: each residual block."""
    return list(tower.transformer.blocks)


def each_stage(tower: nn.Module) -> list[nn.Module]:
    """The `fsdp_units` of a tower whose `stages` is an nn.ModuleList: each stage."""
    return list(tower.stages)

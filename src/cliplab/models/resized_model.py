"""A model config at another input size, and a model's weights carried over to it: what
`--force-image-size`, `--force-context-length` and `--force-patch-dropout` do to a pretrained model.

`resized_config(config, image_size=..., context_length=..., patch_dropout=...)` is the config with
the new sizes (the preprocessing follows the image size). `InputResize(old, new, sequence_resize)`
compares the state dicts the two configs build (on the meta device, nothing allocated): an entry
whose shape differs goes to its tower family's rule (`TowerFamily.resize_positions`: a learned
grid of patch positions resampled, a text table lengthened or shortened), every other entry is
carried over as it is (rotary tables, relative-position MLPs, convolutions: nothing to carry).
An entry that changes and that no rule returns is refused naming it. It resizes a whole state dict
(`resize_state_dict`) or wraps a reader of one tensor at a time (`resize_reader`, for a model
built on meta and filled shard by shard).

Text positions follow one of CONTEXT_EXTENSIONS (`layers.position_resize`): "interpolate"
(open_clip's `resize_text_pos_embed`) or "longclip" (Long-CLIP's stretching).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from cliplab.models.config import ModelConfig
from cliplab.models.families import family_of
from cliplab.models.families.spec import SequenceResize
from cliplab.models.layers.position_resize import interpolate_positions, stretch_positions_longclip
from cliplab.models.registry import build_model, get_model_config
from cliplab.models.tower_configs import VisionConfig

CONTEXT_EXTENSIONS: dict[str, SequenceResize] = {
    "interpolate": interpolate_positions,
    "longclip": stretch_positions_longclip,
}
TOWER_PREFIXES = {"vision": "vision_tower.", "text": "text_tower."}


def resized_config(config: ModelConfig, *, image_size: int | None = None, context_length: int | None = None,
                   patch_dropout: float | None = None) -> ModelConfig:
    """`config` with the image side, text context length and patch dropout given (None: as it is).
    ValueError naming the dotted key when the result does not build, e.g. an image side that is not
    a multiple of the tower's patch size (checked for every family with a `patch_size`, also those
    whose config would floor it)."""
    overrides: dict[str, Any] = {}
    if image_size is not None:
        patch = _patch_size(config.vision)
        if patch is not None and image_size % patch:
            raise ValueError(f"vision.image_size ({image_size}) must be divisible by vision.patch_size ({patch})")
        overrides["vision.image_size"] = image_size
    if context_length is not None:
        overrides["text.context_length"] = context_length
    if patch_dropout is not None:
        if not hasattr(config.vision, "patch_dropout"):
            raise ValueError(f"vision.patch_dropout: the {config.vision.kind} image tower has no patch dropout "
                             "(cliplab's vit family has)")
        overrides["vision.patch_dropout"] = patch_dropout
    return get_model_config(config, **overrides)


def _patch_size(vision: Any) -> int | None:
    """The side of the tower's patches; None for a tower that takes no patches (VisionConfig's conv
    and resnet kinds carry an unused patch_size)."""
    if isinstance(vision, VisionConfig) and vision.kind != "vit":
        return None
    return getattr(vision, "patch_size", None)


def _shapes(config: ModelConfig) -> dict[str, torch.Size]:
    with torch.device("meta"):
        return {name: value.shape for name, value in build_model(config).state_dict().items()}


class InputResize:
    """The weights of `old` (a ModelConfig) carried over to `new` (module docstring).

    changed: name -> (old shape, new shape) of the entries whose shapes differ. ValueError at
    construction when one cannot be resized (no rule, or a rule refusing the size).
    """

    def __init__(self, old: ModelConfig, new: ModelConfig, sequence_resize: SequenceResize = interpolate_positions):
        self.old, self.new, self.sequence_resize = old, new, sequence_resize
        old_shapes, new_shapes = _shapes(old), _shapes(new)
        if old_shapes.keys() != new_shapes.keys():
            differing = sorted(old_shapes.keys() ^ new_shapes.keys())
            raise ValueError(f"the model at the new size has other tensors: {', '.join(differing[:5])}")
        self.changed = {name: (old_shapes[name], new_shapes[name]) for name in old_shapes
                        if old_shapes[name] != new_shapes[name]}
        self._refuse_unhandled()
        # The rules run once on meta tensors, so that a size a rule refuses is refused here, before any weight is read.
        self.resize({name: torch.empty(before, device="meta") for name, (before, _) in self.changed.items()})

    def _refuse_unhandled(self) -> None:
        for name, (before, after) in self.changed.items():
            side = next((side for side, prefix in TOWER_PREFIXES.items() if name.startswith(prefix)), None)
            if side is None or family_of(getattr(self.old, side)).resize_positions is None:
                owner = f"the {getattr(self.old, side).kind} {side} tower" if side else "the model"
                raise ValueError(f"{owner}'s {name} changes shape {list(before)} -> {list(after)} at the new size, and "
                                 "no rule of its family resizes it")

    def describe(self) -> list[str]:
        """One phrase per resized entry, e.g. "vision_tower.position_embedding [50, 64] -> [197, 64]"."""
        return [f"{name} {list(before)} -> {list(after)}" for name, (before, after) in self.changed.items()]

    def resize(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The changed entries (name -> tensor at the old shape, every name of `changed`) at the new
        shapes, by their families' rules."""
        resized: dict[str, torch.Tensor] = {}
        for side, prefix in TOWER_PREFIXES.items():
            local = {name[len(prefix):]: value for name, value in values.items() if name.startswith(prefix)}
            if local:
                family = family_of(getattr(self.old, side))
                out = family.resize_positions.rule(local, getattr(self.old, side), getattr(self.new, side),
                                                   self.sequence_resize)
                resized.update({prefix + name: value for name, value in out.items()})
        for name, (_, after) in self.changed.items():
            if name not in resized:
                raise ValueError(f"the {name.split('_tower.')[0]} tower family's rule leaves {name} at its old shape")
            if resized[name].shape != after:
                raise ValueError(f"the rule made {name} {list(resized[name].shape)}, expected {list(after)}")
        return resized

    def resize_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A whole state dict of the old model -> the new model's."""
        return {**state, **self.resize({name: state[name] for name in self.changed})}

    def resize_reader(self, take: Callable[[str], torch.Tensor]) -> Callable[[str], torch.Tensor]:
        """take(name) of the old model's tensors -> take(name) of the new model's (the changed entries
        are read and resized on the first call)."""
        resized: dict[str, torch.Tensor] = {}

        def take_resized(name: str) -> torch.Tensor:
            if name not in self.changed:
                return take(name)
            if not resized:
                resized.update(self.resize({changed: take(changed) for changed in self.changed}))
            return resized[name]

        return take_resized

"""AdamW's parameter groups: weight-decay exclusions, per-tower lr and weight decay, layer-wise lr decay.

Every trainable tensor gets an lr scale and a weight decay (`OptimConfig`), and the tensors with
equal ones form one group of the run's single AdamW; the schedule's lr times a group's `lr_scale`
is its lr (`schedule.set_lr`). For a tensor of tower T ("image": the image tower and its
projection, "text": the text tower and its projection), in layer k of the tower's n layers:

    lr_scale      = (lr_T / lr) * D_T ^ (n - 1 - k)       lr_T: optim.lr_image / lr_text, else lr
                                                          D_T: optim.layer_decay_image / _text, else
                                                               optim.layer_decay, else 1
    weight_decay  = 0 for norms, biases, gains, embeddings, logit scale / bias (open_clip's rule and
                    cliplab's additions, `excluded_from_weight_decay`) and names matching
                    optim.wd_exclude; else wd_T (optim.wd_image / wd_text, else wd)

The layers are the tower family's `lock_groups` (input to output, the groups --lock-image-unlocked-
groups counts). For open_clip's own towers (`towers.locking.open_clip_layout`) they are
[embeddings], block 0, ..., block L-2, [block L-1 with the final norm], [projection]: n = L + 2, so
block i trains at D^(L - i), the embeddings at D^(L + 1) and the projection at D^0 (timm's layer
decay, with the final norm in its last block's layer). The projections and anything of a tower
outside its groups are D^0 too; the logit scale and bias, a CoCa decoder and x-clip objective
heads belong to no tower: scale 1, weight decay `wd`.

Groups are ordered by (lr scale, decayed, weight decay) and list their tensors in `named_parameters`
order; the two groups of scale 1 (not decayed; decayed by `wd`) are always there, empty or not, so
that with no option set the groups are exactly the two cliplab always had: checkpoints written
before these options resume unchanged. Each group carries
`param_names` (the trainable module's names), `lr_scale` and `layers` (which towers' layers it
holds, for `describe_parameter_groups` and `cliplab train --dry-run`); AdamW saves them with its state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from cliplab.models.families import family_of
from cliplab.models.towers.locking import group_parameters
from cliplab.train.config import OptimConfig
from cliplab.train.parallel.fsdp import canonical_name

# open_clip's rule (main.py): no decay when ndim < 2 or the name contains bn/ln/bias/logit_scale.
# cliplab adds positional / class embeddings and gains, which are also not weights to shrink.
_NO_DECAY_NAME_PARTS = ("bn", "ln", "bias", "logit_scale", "logit_bias", "norm", "position_embedding",
                        "positional_embedding", "class_embedding", "cls_token", "gain")
# tower label -> (the config section of its tower, the tower, its projection)
TOWER_PARTS = {"image": ("vision", "vision_tower", "image_projection"),
               "text": ("text", "text_tower", "text_projection")}


def excluded_from_weight_decay(name: str, parameter: torch.Tensor) -> bool:
    """True for biases, norm parameters, gains, positional/class embeddings and logit scale/bias."""
    return parameter.ndim < 2 or any(part in name for part in _NO_DECAY_NAME_PARTS)


@dataclass(frozen=True)
class Layer:
    """Where a tensor sits: tower ("image", "text", or None outside both), the index of its layer
    from the input (0: the embeddings of a ViT) and the tower's layer count."""

    tower: str | None
    index: int = 0
    count: int = 1

    @property
    def depth_from_output(self) -> int:
        """n - 1 - k: 0 for the last layer (and for tensors of no tower)."""
        return self.count - 1 - self.index

    @property
    def label(self) -> str:
        return "other" if self.tower is None else f"{self.tower} {self.index}/{self.count}"


def tower_layers(model: nn.Module) -> dict[int, Layer]:
    """id(parameter) -> its Layer, for every parameter of `model`'s towers and projections (a cliplab
    model; its current parameter objects, sharded ones included)."""
    layers: dict[int, Layer] = {}
    for tower, (section, tower_name, projection_name) in TOWER_PARTS.items():
        module = getattr(model, tower_name)
        groups = family_of(getattr(model.config, section)).lock_groups(module)
        for index, group in enumerate(groups):
            for parameter in group_parameters(group):
                layers.setdefault(id(parameter), Layer(tower, index, len(groups)))
        last = Layer(tower, len(groups) - 1, len(groups))
        for parameter in [*module.parameters(), *getattr(model, projection_name).parameters()]:
            layers.setdefault(id(parameter), last)
    return layers


def lr_scale(layer: Layer, config: OptimConfig) -> float:
    """The lr of a tensor in `layer` over the schedule's (see the module docstring)."""
    if layer.tower is None:
        return 1.0
    tower_lr = getattr(config, f"lr_{layer.tower}")
    decay = getattr(config, f"layer_decay_{layer.tower}")
    decay = config.layer_decay if decay is None else decay
    scale = 1.0 if tower_lr is None else tower_lr / config.lr
    return scale * (1.0 if decay is None else decay ** layer.depth_from_output)


def weight_decay(name: str, parameter: torch.Tensor, layer: Layer, config: OptimConfig) -> float | None:
    """The weight decay of tensor `name` (None: excluded, never decayed)."""
    if excluded_from_weight_decay(name, parameter) or any(re.search(pattern, name) for pattern in config.wd_exclude):
        return None
    tower_wd = getattr(config, f"wd_{layer.tower}") if layer.tower is not None else None
    return config.wd if tower_wd is None else tower_wd


def parameter_groups(trainable: nn.Module, config: OptimConfig, model: nn.Module | None = None) -> list[dict]:
    """The AdamW groups of the trainable parameters of `trainable` (the model, or the model with
    objective heads; `model`: the cliplab model in it, default `trainable`). Names are matched (by
    --wd-exclude) and listed as the model's state dict has them (x-clip heads under `objectives.`)."""
    model = trainable if model is None else model
    layers = tower_layers(model)
    model_names = {id(parameter): canonical_name(name) for name, parameter in model.named_parameters()}
    groups: dict[tuple[float, bool, float], dict] = {}

    def group_of(key: tuple[float, bool, float]) -> dict:
        return groups.setdefault(key, {"params": [], "param_names": [], "weight_decay": key[2], "lr_scale": key[0],
                                       "layers": []})
    group_of((1.0, False, 0.0))  # the two groups of a run without these options, even when empty
    group_of((1.0, True, config.wd))
    for trainable_name, parameter in trainable.named_parameters():
        if not parameter.requires_grad:
            continue
        name = model_names.get(id(parameter), canonical_name(trainable_name))
        layer = layers.get(id(parameter), Layer(None))
        decay = weight_decay(name, parameter, layer, config)
        scale = lr_scale(layer, config)
        group = group_of((scale, decay is not None, 0.0 if decay is None else decay))
        group["params"].append(parameter)
        group["param_names"].append(trainable_name)
        if layer.label not in group["layers"]:
            group["layers"].append(layer.label)
    return [groups[key] for key in sorted(groups)]


def describe_parameter_groups(groups: list[dict], lr: float) -> list[str]:
    """One line per group: its lr (scale and peak value), weight decay, tensor and value counts and
    the layers it holds ("image 3/14": layer 3 of the image tower's 14, counted from the input)."""
    lines = []
    for index, group in enumerate(groups):
        values = sum(parameter.numel() for parameter in group["params"])
        scale = group.get("lr_scale", 1.0)
        lines.append(f"group {index}: lr x{scale:.4g} ({lr * scale:.3g}), weight decay {group['weight_decay']:g}, "
                     f"{len(group['params'])} tensor{'s' if len(group['params']) != 1 else ''} ({values:,} values): {', '.join(group.get('layers', []))}")
    return lines

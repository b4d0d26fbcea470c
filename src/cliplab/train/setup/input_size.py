"""The run's model at the input size the `model` section forces (`force_image_size`,
`force_context_length`, `force_patch_dropout`, open_clip's --force-* flags): its config, and for a
pretrained model its weights carried over (`cliplab.models.resized_model`).

Each forced key is applied in turn, so a size the model cannot take is a ConfigError naming the
key that asked for it: an image side that is not a multiple of the patch size, a context longer
than a Hugging Face tower's positions, Long-CLIP stretching that would shorten the table, patch
dropout on a tower without it, or a size whose tensors no family rule resizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from cliplab.models.config import ModelConfig
from cliplab.models.registry import build_model
from cliplab.models.resized_model import CONTEXT_EXTENSIONS, InputResize, resized_config
from cliplab.pretrained.loaders import fill_model
from cliplab.train.config import ConfigError, ModelSetupConfig

# config key -> (the `resized_config` argument it sets, the model config key it overrides)
FORCED_KEYS = {"force_image_size": ("image_size", "vision.image_size"),
               "force_context_length": ("context_length", "text.context_length"),
               "force_patch_dropout": ("patch_dropout", "vision.patch_dropout")}


@dataclass(frozen=True)
class ForcedStep:
    """One forced key (`key`, holding `value`): the model config before it (`old`) and after (`new`)."""

    key: str
    value: object
    old: ModelConfig
    new: ModelConfig

    def error(self, error: ValueError, setup: ModelSetupConfig) -> ConfigError:
        via = f" with context_extension {setup.context_extension!r}" if self.key == "force_context_length" else ""
        return ConfigError(f"model.{self.key}", self.value, f"does not fit the model{via}: {error}")


def forced_steps(config: ModelConfig, setup: ModelSetupConfig) -> list[ForcedStep]:
    """The steps from `config` to the config `setup` forces, one per forced key that changes it."""
    steps = []
    for key, (argument, _) in FORCED_KEYS.items():
        value = getattr(setup, key)
        if value is None:
            continue
        try:
            new = resized_config(config, **{argument: value})
        except ValueError as error:
            raise ForcedStep(key, value, config, config).error(error, setup) from None
        if new != config:
            steps.append(ForcedStep(key, value, config, new))
        config = new
    return steps


def forced_config(config: ModelConfig, setup: ModelSetupConfig) -> ModelConfig:
    """`config` at the sizes `setup` forces (a ConfigError naming the key it cannot take)."""
    steps = forced_steps(config, setup)
    return steps[-1].new if steps else config


def forced_overrides(setup: ModelSetupConfig) -> dict[str, object]:
    """The `create_model` overrides of what `setup` forces (a fresh model; the preprocessing's image
    size follows the tower's)."""
    return {dotted: getattr(setup, key) for key, (_, dotted) in FORCED_KEYS.items() if getattr(setup, key) is not None}


@dataclass(frozen=True)
class ResizedModel:
    """model: the model at the forced sizes; weights: the opener of its weights for a model on meta
    (None otherwise); changes: one phrase per resized tensor (for the start-up line)."""

    model: nn.Module
    weights: Callable | None
    changes: list[str]


def resize_pretrained(model: nn.Module, setup: ModelSetupConfig, weights: Callable | None) -> ResizedModel:
    """A loaded model (its weights in place, or on meta with `weights`, the opener of its checkpoint:
    () -> take(name)) at the sizes `setup` forces, built afresh and given the carried-over weights."""
    extension = CONTEXT_EXTENSIONS[setup.context_extension]
    resizes = []
    for step in forced_steps(model.config, setup):
        try:
            resizes.append(InputResize(step.old, step.new, extension))
        except ValueError as error:
            raise step.error(error, setup) from None
    if not resizes:
        return ResizedModel(model, weights, [])
    device = next(model.parameters()).device
    with torch.device("meta"):
        resized = build_model(resizes[-1].new, output_dict=model.output_dict)
    changes = [change for resize in resizes for change in resize.describe()]
    if device.type == "meta":
        def opener() -> Callable[[str], torch.Tensor]:
            take = weights()
            for resize in resizes:
                take = resize.resize_reader(take)
            return take
        return ResizedModel(resized, None if weights is None else opener, changes)
    state = model.state_dict()
    for resize in resizes:
        state = resize.resize_state_dict(state)
    return ResizedModel(fill_model(resized, device, state.__getitem__), None, changes)

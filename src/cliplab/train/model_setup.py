"""The model a run trains, built from the `model` section: create, lock towers, place on the device.

This is where a model built from a pretrained checkpoint (with its tokenizer and preprocess) lands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from cliplab.data.transforms import PreprocessConfig, image_transform
from cliplab.train.config import ConfigError, ModelSetupConfig


def build_training_model(setup: ModelSetupConfig, device: torch.device) -> nn.Module:
    """create_model(name, **overrides), towers locked as asked, on `device`, in train mode; its
    forward returns a dict (output_dict=True), which the loss reads by key. Draws the initial weights
    from the global torch generator."""
    from cliplab.models import create_model

    try:
        model = create_model(setup.name, output_dict=True, **setup.overrides)
    except ValueError as error:
        raise ConfigError("model", setup.name, f"does not build a model: {error}") from None
    if setup.lock_image:
        model.lock_image_tower(unlocked_groups=setup.lock_image_unlocked_groups,
                               freeze_norms=setup.lock_image_freeze_bn_stats)
    if setup.lock_text:
        model.lock_text_tower(unlocked_layers=setup.lock_text_unlocked_layers,
                              freeze_norms=setup.lock_text_freeze_layer_norm)
    if setup.grad_checkpointing:
        model.set_grad_checkpointing(True)
    return model.to(device).train()


@dataclass(frozen=True)
class Transforms:
    """The model's image preprocessing: PIL image -> Float[3, S, S], with and without augmentation."""

    train: Callable
    eval: Callable


def build_transforms(preprocess: PreprocessConfig) -> Transforms:
    return Transforms(train=image_transform(preprocess, True), eval=image_transform(preprocess, False))

"""The model a run trains, built from the `model` section: plan the overrides, create, lock towers,
place on the device.

`plan_model` settles what the model config alone cannot know: the input size (`force_image_size`)
and the image normalisation that fits the run's data. The tiny model configs normalise with
Fashion-MNIST's grayscale statistics; on other data (csv, webdataset, parquet: colour images) a run
normalises with OpenAI CLIP's mean and std instead, the statistics of the photographs CLIP-family
models are usually trained on, known before any image is read and the same on every rank and at
every resume. `image_mean` / `image_std` choose others; a model config whose statistics are not
Fashion-MNIST's keeps them. The choice is printed at start-up and saved with the model (its
`preprocess` section), so `cliplab.load` preprocesses as training did.

This is where a model built from a pretrained checkpoint (with its tokenizer and preprocess) lands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from cliplab.data.fashion_mnist import FASHION_MNIST_MEAN, FASHION_MNIST_STD
from cliplab.data.transforms import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PreprocessConfig, image_transform
from cliplab.train.config import ConfigError, ModelSetupConfig


@dataclass(frozen=True)
class ModelPlan:
    """overrides: what `create_model` gets (the section's own, plus image size and normalisation);
    preprocessing: the start-up line saying how images are sized and normalised, and why."""

    overrides: dict[str, Any]
    preprocessing: str


def _model_config(name: str, overrides: dict[str, Any], *, key: str = "model", value: Any = None):
    """The ModelConfig of `name` with `overrides`; a ConfigError naming `key` (holding `value`) when
    it does not build."""
    from cliplab.models.registry import get_model_config

    try:
        return get_model_config(name, **overrides)
    except ValueError as error:
        raise ConfigError(key, name if value is None else value, f"does not build a {name} model: {error}") from None


def _triple(values) -> str:
    return "(" + ", ".join(f"{value:.3f}" for value in values) + ")"


def _fitting_statistics(preprocess: PreprocessConfig, name: str, dataset_type: str):
    """(mean, std, why) that fit `dataset_type` data for a model whose config normalises as `preprocess`."""
    if dataset_type != "fashion-mnist" and (preprocess.mean, preprocess.std) == (FASHION_MNIST_MEAN, FASHION_MNIST_STD):
        return OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, (
            f"OpenAI CLIP's: the {name} config's are Fashion-MNIST's grayscale statistics, which do not fit "
            f"{dataset_type} images; --image-mean/--image-std choose others")
    return preprocess.mean, preprocess.std, f"the {name} config's"


def plan_model(setup: ModelSetupConfig, dataset_type: str) -> ModelPlan:
    """The overrides and the preprocessing line of a run on `dataset_type` data (see the module docstring)."""
    overrides = dict(setup.overrides)
    preprocess = _model_config(setup.name, overrides).preprocess
    if setup.force_image_size is not None:
        overrides["vision.image_size"] = overrides["preprocess.image_size"] = setup.force_image_size
        preprocess = _model_config(setup.name, overrides, key="model.force_image_size",
                                   value=setup.force_image_size).preprocess
    mean, std, why = _fitting_statistics(preprocess, setup.name, dataset_type)
    given = [flag for flag, value in (("--image-mean", setup.image_mean), ("--image-std", setup.image_std))
             if value is not None]
    if given:
        mean, std = setup.image_mean or mean, setup.image_std or std
        why = "as given (" + ", ".join(given) + ")" + ("" if len(given) == 2 else f"; the other {why}")
    overrides["preprocess.mean"], overrides["preprocess.std"] = list(mean), list(std)
    size = preprocess.image_size
    forced = " (--force-image-size)" if setup.force_image_size is not None else ""
    return ModelPlan(overrides=overrides, preprocessing=f"images: {size} x {size}{forced}, normalised with mean "
                     f"{_triple(mean)} and std {_triple(std)}, {why}")


def build_training_model(setup: ModelSetupConfig, plan: ModelPlan, device: torch.device) -> nn.Module:
    """create_model(name, **plan.overrides), towers locked as asked, on `device`, in train mode; its
    forward returns a dict (output_dict=True), which the loss reads by key. Draws the initial weights
    from the global torch generator."""
    from cliplab.models import create_model

    try:
        model = create_model(setup.name, output_dict=True, **plan.overrides)
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

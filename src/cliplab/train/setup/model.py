"""The model a run trains, built from the `model` section: created or loaded, towers locked, on the device.

    model.pretrained None    create_model(name, **overrides), the overrides planned for the run's data
                             (`model_plan`): freshly initialised from the global RNG
    model.pretrained PATH    cliplab.model_io.load_model(PATH, model=name): the checkpoint's architecture,
                             weights, tokenizer and preprocessing (any format `cliplab.load` reads;
                             `name` names the architecture of formats that carry none, and must agree
                             with the others); at the image size, context length and patch dropout
                             the section forces, its weights carried over (`input_size`)

The towers are then locked as --lock-* asks and, with LoRA, adapters added (`setup.lora`).

A run that resumes takes its weights from the resumed checkpoint, so the pretrained file then only
gives the architecture: it is built on the meta device without reading a weight, and allocated
empty for the checkpoint to fill (the model holds no buffers outside its state dict).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from cliplab.data.transforms import PreprocessConfig, image_transform
from cliplab.distributed.agreement import raise_if_any_rank_failed
from cliplab.errors import UserError
from cliplab.model_io import load_model
from cliplab.models import create_model
from cliplab.models.lora import LoraSpec
from cliplab.pretrained.formats import WeightsOpener
from cliplab.train.config import ConfigError, LoraConfig, ModelSetupConfig
from cliplab.train.setup.input_size import resize_pretrained
from cliplab.train.setup.lora import adapt_for_training, describe_lora
from cliplab.train.setup.model_plan import ModelPlan
from cliplab.train.setup.tokenizer import RunTokenizer


class PretrainedLoadError(UserError):
    """`model.pretrained` (--pretrained) does not give a model for this run; the message says why."""


@dataclass(frozen=True)
class TrainingModel:
    """model: in train mode on the run's device, forward returns a dict (output_dict=True), which
    the loss reads by key. tokenizer: the pretrained checkpoint's (None for a fresh model, or a
    checkpoint without one). origin / preprocess_origin: where the architecture and weights, and
    the preprocessing (`model.config.preprocess`), come from, in words. weights: for a pretrained
    model built on meta (FSDP2), the opener of its checkpoint's weights (`LoadedModel.weights`,
    by the names of the model without adapters). lora: the LoRA adapters added (None: none)."""

    model: nn.Module
    tokenizer: Any
    origin: str
    preprocess_origin: str
    weights: WeightsOpener | None = None
    lora: LoraSpec | None = None


def _created_model(setup: ModelSetupConfig, plan: ModelPlan | None) -> nn.Module:
    overrides = setup.overrides if plan is None else plan.overrides
    try:
        return create_model(setup.name, output_dict=True, **overrides)
    except ValueError as error:
        raise ConfigError("model", setup.name, f"does not build a model: {error}") from None


def _pretrained_model(setup: ModelSetupConfig, device: torch.device,
                      resuming: bool) -> tuple[nn.Module, Any, str, WeightsOpener | None]:
    """Every rank reads the checkpoint itself; a rank that cannot (a path missing on one node) makes
    every rank raise its error (a collective). On the meta device (FSDP2) the weights are not read
    here: the returned opener reads them for the shards."""
    loaded, failure = None, None
    try:
        loaded = load_model(setup.pretrained, model=setup.name, device="meta" if resuming else device,
                            output_dict=True, require_tokenizer=False)
    except UserError as error:
        with_model = f" with --model {setup.name}" if setup.name is not None else ""
        failure = PretrainedLoadError(f"--pretrained {setup.pretrained} (model.pretrained){with_model}: {error}")
    raise_if_any_rank_failed(failure)
    resized = resize_pretrained(loaded.model, setup, loaded.weights)
    model = resized.model
    if resuming:
        model.to_empty(device=device)
    origin = f"the pretrained checkpoint {loaded.path} ({loaded.format})"
    if resized.changes:
        origin += f", resized ({'; '.join(resized.changes)})"
    return model, loaded.tokenizer, origin, resized.weights


def _lock(model: nn.Module, setup: ModelSetupConfig) -> None:
    """Freeze the towers as `setup` asks (open_clip's flags, open_clip's meaning); a count of unlocked
    groups the tower does not have is a ConfigError naming the key."""
    towers = ((setup.lock_image, "lock_image_unlocked_groups",
               lambda unlocked: model.lock_image_tower(unlocked, freeze_bn_stats=setup.lock_image_freeze_bn_stats)),
              (setup.lock_text, "lock_text_unlocked_layers",
               lambda unlocked: model.lock_text_tower(unlocked, freeze_layer_norm=setup.lock_text_freeze_layer_norm)))
    for locked, key, lock_tower in towers:
        if locked:
            unlocked = getattr(setup, key)
            try:
                lock_tower(unlocked)
            except ValueError as error:
                raise ConfigError(f"model.{key}", unlocked, f"does not fit the model: {error}") from None


def build_training_model(setup: ModelSetupConfig, device: torch.device, *, plan: ModelPlan | None = None,
                         resuming: bool = False, lora: LoraConfig | None = None) -> TrainingModel:
    """The run's model (see the module docstring), towers locked as asked, adapted as `lora` asks,
    on `device`, in train mode. A fresh model draws its initial weights from the global torch
    generator, then the adapters theirs; a loaded one draws only the adapters'. plan: a fresh
    model's size and normalisation for the run's data (`model_plan.plan_model`; None: the section's
    overrides as they are). resuming: the weights will come from a resumed checkpoint (see the
    module docstring)."""
    opener = None
    if setup.pretrained is None:
        model, tokenizer = _created_model(setup, plan), None
        origin, weights = f"the model config {setup.name}", "freshly initialised"
        preprocess_origin = origin if plan is None else plan.origin
    else:
        model, tokenizer, origin, opener = _pretrained_model(setup, device, resuming)
        weights, preprocess_origin = "with its weights", origin
    if resuming:
        weights = "weights from the resumed checkpoint"
    _lock(model, setup)
    adapters = adapt_for_training(model, lora) if lora is not None else None
    if setup.grad_checkpointing:
        model.set_grad_checkpointing(True)
    return TrainingModel(model.to(device).train(), tokenizer, f"{origin}, {weights}", preprocess_origin, opener,
                         adapters)


@dataclass(frozen=True)
class Transforms:
    """The model's image preprocessing: PIL image -> Float[3, S, S], with and without augmentation."""

    train: Callable
    eval: Callable


def build_transforms(preprocess: PreprocessConfig) -> Transforms:
    return Transforms(train=image_transform(preprocess, True), eval=image_transform(preprocess, False))


def describe_preprocess(preprocess: PreprocessConfig) -> str:
    """One line of what the transforms do, e.g. "224x224 bicubic, resize shortest, mean (...), std
    (...); training: random resized crop scale (0.9, 1.0), ratio (0.75, 1.33), no flip". A crop of
    scale (1, 1) and ratio (1, 1) always takes the whole image, and is named so."""
    height, width = preprocess.size_hw
    flip = "horizontal flip" if preprocess.train_horizontal_flip else "no flip"
    scale, ratio = preprocess.train_crop_scale, preprocess.train_crop_ratio
    crop = ("the whole image resized (crop scale (1, 1), ratio (1, 1))" if preprocess.train_crop_is_whole_image
            else f"random resized crop scale {_floats(scale)}, ratio {_floats(ratio)}")
    return (f"{height}x{width} {preprocess.interpolation}, resize {preprocess.resize_mode}, "
            f"mean {_floats(preprocess.mean)}, std {_floats(preprocess.std)}; training: {crop}, {flip}")


def _floats(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{value:.4g}" for value in values) + ")"


def describe_model(model: TrainingModel) -> list[str]:
    """The start-up lines of the model: its kind, parameter counts and origin, and its LoRA adapters."""
    parameters = sum(parameter.numel() for parameter in model.model.parameters())
    trainable = sum(parameter.numel() for parameter in model.model.parameters() if parameter.requires_grad)
    lines = [f"model: {model.model.config.kind}, {parameters:,} parameters ({trainable:,} trainable); from "
             f"{model.origin}"]
    if model.lora is not None:
        lines.append(describe_lora(model.lora, model.model))
    return lines


def describe_run_inputs(model: TrainingModel, tokenizer: RunTokenizer) -> list[str]:
    """The start-up lines saying which model, tokenizer and preprocessing the run uses, and where
    each comes from."""
    config = model.model.config
    vocabulary = tokenizer.tokenizer
    return describe_model(model) + [f"tokenizer: {vocabulary.kind}, {vocabulary.vocab_size} ids, context {vocabulary.context_length}; "
                    f"from {tokenizer.origin}",
                    f"preprocessing: {describe_preprocess(config.preprocess)}; from {model.preprocess_origin}"]

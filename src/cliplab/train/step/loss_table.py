"""The training loss: one table from model kind to loss class, its options and the outputs it reads.

| model kind | tiled_loss | loss class      | options of LossConfig it takes        | model outputs it reads            |
|------------|------------|-----------------|---------------------------------------|-----------------------------------|
| clip       | no         | ClipLoss        | local_loss, gather_with_grad          | image/text_features, logit_scale  |
| clip       | yes        | TiledClipLoss   | local_loss, gather_with_grad, tile_size | the same                        |
| siglip     | no         | SigLipLoss      | dist_impl                             | the same + logit_bias             |
| siglip     | yes        | TiledSigLipLoss | dist_impl, tile_size                  | the same + logit_bias             |
| coca       | no         | CoCaLoss        | local_loss, gather_with_grad          | the clip ones + logits, labels    |

Every loss also gets cache_labels=True, this rank's place in the data-parallel group and
max_logit_scale; CoCaLoss its two weights and the text tower's pad_id. An option the user set that
the chosen loss does not take is a ConfigError naming it (e.g. --local-loss with a SigLIP model), as
is a combination without a row (a tiled CoCa loss). The total adds the weighted x-clip objective
terms (`cliplab.objectives`), each logged as `loss/<term>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from cliplab import losses
from cliplab.models.config import ModelConfig
from cliplab.train.config import ConfigError, LossConfig
from cliplab.train.parallel.processes import DistributedContext
from cliplab.train.step.accumulation import LossOutput

CLIP_OUTPUTS = ("image_features", "text_features", "logit_scale")


def _no_arguments(config: LossConfig, model: ModelConfig) -> dict[str, Any]:
    return {}


def _coca_arguments(config: LossConfig, model: ModelConfig) -> dict[str, Any]:
    return {"caption_loss_weight": config.coca_caption_loss_weight,
            "clip_loss_weight": config.coca_contrastive_loss_weight, "pad_id": model.text.pad_id}


@dataclass(frozen=True)
class LossChoice:
    """loss_class(**arguments); `options`: the LossConfig options it takes; `outputs`: the model
    output keys its forward reads, by keyword; `kind_arguments`: arguments only this kind has."""

    loss_class: type[nn.Module]
    options: tuple[str, ...]
    outputs: tuple[str, ...]
    kind_arguments: Callable[[LossConfig, ModelConfig], dict[str, Any]] = field(default=_no_arguments)


# (model kind, tiled_loss) -> the loss; see the module docstring.
LOSS_TABLE: dict[tuple[str, bool], LossChoice] = {
    ("clip", False): LossChoice(losses.ClipLoss, ("local_loss", "gather_with_grad"), CLIP_OUTPUTS),
    ("clip", True): LossChoice(losses.TiledClipLoss, ("local_loss", "gather_with_grad", "tile_size"), CLIP_OUTPUTS),
    ("siglip", False): LossChoice(losses.SigLipLoss, ("dist_impl",), CLIP_OUTPUTS + ("logit_bias",)),
    ("siglip", True): LossChoice(losses.TiledSigLipLoss, ("dist_impl", "tile_size"), CLIP_OUTPUTS + ("logit_bias",)),
    ("coca", False): LossChoice(losses.CoCaLoss, ("local_loss", "gather_with_grad"),
                                CLIP_OUTPUTS + ("logits", "labels"), kind_arguments=_coca_arguments),
}


def _options_set(config: LossConfig) -> dict[str, Any]:
    """The options the user switched on, as constructor arguments (the others keep the loss's default)."""
    values = {"local_loss": config.local_loss, "gather_with_grad": config.gather_with_grad,
              "dist_impl": config.dist_impl, "tile_size": config.tile_size}
    return {name: value for name, value in values.items() if value not in (None, False)}


def choose_loss(config: LossConfig, model: ModelConfig) -> LossChoice:
    """The table's row for `model`, after checking that the loss options fit it."""
    if config.siglip and model.kind != "siglip":
        raise ConfigError("loss.siglip", True, f"needs a siglip model; this is a {model.kind} model (it has no "
                          "logit_bias): remove --siglip")
    if model.kind == "siglip" and not config.siglip:
        raise ConfigError("loss.siglip", False, "must be true for a siglip model (trained with the sigmoid loss "
                          "and its logit_bias): add --siglip")
    choice = LOSS_TABLE.get((model.kind, config.tiled_loss))
    if choice is None:
        raise ConfigError("loss.tiled_loss", True, f"is not available for a {model.kind} model (its loss is "
                          f"{LOSS_TABLE[(model.kind, False)].loss_class.__name__})")
    for name, value in _options_set(config).items():
        if name not in choice.options:
            raise ConfigError(f"loss.{name}", value, f"is not supported by {choice.loss_class.__name__}")
    return choice


class TrainingLoss:
    """loss(model_output) -> LossOutput: total (fp32, 0-d) = the contrastive loss's terms (unless an
    objective replaces it) + the weighted objective terms; `terms` holds every unweighted term,
    detached.

    An objective replaces the loss only for CLIP models: `build_objectives` refuses DCL and the
    extra latent projection for CoCa (whose caption term would be dropped) and SigLIP models.
    """

    def __init__(self, loss: nn.Module, outputs: tuple[str, ...], objectives: nn.Module | None = None):
        self.loss, self.outputs, self.objectives = loss, outputs, objectives

    def __call__(self, model_output: Mapping[str, Any]) -> LossOutput:
        terms: dict[str, torch.Tensor] = {}
        metrics = total = None
        if self.objectives is None or not self.objectives.replaces_contrastive_loss:
            inputs = {key: model_output[key] for key in self.outputs}
            loss_dict, metrics = self.loss(**inputs, output_dict=True, return_metrics=True)
            terms.update(loss_dict)
            total = sum(value.float() for value in loss_dict.values())
        if self.objectives is not None:
            objective_terms = model_output["objective_terms"]
            for name in objective_terms:
                if name in terms:
                    raise ValueError(f"objective term '{name}' collides with a loss term of the same name")
            terms.update(objective_terms)
            weighted = self.objectives.weighted_sum(objective_terms).float()
            total = weighted if total is None else total + weighted
        return LossOutput(total=total, terms={name: value.detach() for name, value in terms.items()},
                          metrics=metrics)


def build_training_loss(config: LossConfig, model: ModelConfig, context: DistributedContext,
                        objectives: nn.Module | None = None) -> TrainingLoss:
    """The run's loss for a model of config `model`, on this rank of the data-parallel group."""
    choice = choose_loss(config, model)
    loss = choice.loss_class(cache_labels=True, rank=context.rank, world_size=context.world_size,
                             max_logit_scale=config.max_logit_scale, **_options_set(config),
                             **choice.kind_arguments(config, model))
    return TrainingLoss(loss, choice.outputs, objectives)

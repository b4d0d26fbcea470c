"""Building the training loss from LossConfig, and turning a model output into a LossOutput.

The loss is chosen as open_clip chooses it: CoCaLoss for a captioning model, SigLipLoss with
`siglip`, ClipLoss otherwise; `tiled_loss` picks the memory-efficient tiled variant. The model's
output dict is passed by keyword (only the keys the loss's forward accepts), so a loss and a model
agree by name. Extra objective terms (`cliplab.objectives`) are added to the total, each logged as
`loss/<term>`.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

import torch
from torch import nn

from cliplab.train.accumulation import LossOutput
from cliplab.train.config import ConfigError, LossConfig


def _construct(cls: type, options: dict[str, Any], requested: dict[str, Any]) -> nn.Module:
    """cls(**options, **requested): `options` are dropped where cls does not take them; a
    `requested` option (one the user set) that cls does not take is a configuration error."""
    accepted = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    kwargs = {name: value for name, value in options.items() if takes_any or name in accepted}
    for name, value in requested.items():
        if not (takes_any or name in accepted):
            raise ConfigError(f"loss.{name}", value, f"is not supported by {cls.__name__}")
        kwargs[name] = value
    return cls(**kwargs)


def build_loss(config: LossConfig, *, is_coca: bool, pad_id: int, rank: int, world_size: int) -> nn.Module:
    """The loss module for this run (rank/world_size of the data-parallel group)."""
    import cliplab.losses as losses

    options = {"cache_labels": True, "rank": rank, "world_size": world_size,
               "max_logit_scale": config.max_logit_scale}
    requested: dict[str, Any] = {}
    if config.local_loss or config.gather_with_grad:
        requested.update(local_loss=config.local_loss, gather_with_grad=config.gather_with_grad)
    if config.dist_impl is not None:
        requested["dist_impl"] = config.dist_impl
    if config.tile_size is not None:
        requested["tile_size"] = config.tile_size
    if is_coca:
        if config.siglip or config.tiled_loss:
            raise ConfigError("loss.siglip" if config.siglip else "loss.tiled_loss", True,
                              "is not available for a CoCa model (its loss is CoCaLoss)")
        requested.update(caption_loss_weight=config.coca_caption_loss_weight,
                         clip_loss_weight=config.coca_contrastive_loss_weight, pad_id=pad_id)
        return _construct(losses.CoCaLoss, options, requested)
    if config.siglip:
        cls = losses.TiledSigLipLoss if config.tiled_loss else losses.SigLipLoss
    else:
        cls = losses.TiledClipLoss if config.tiled_loss else losses.ClipLoss
    return _construct(cls, options, requested)


def _forward_parameters(loss_fn: nn.Module) -> set[str]:
    return set(inspect.signature(loss_fn.forward).parameters)


def compute_loss(loss_fn: nn.Module, model_output: Mapping[str, Any],
                 objectives: nn.Module | None = None) -> LossOutput:
    """Total loss (fp32, 0-d) = the contrastive loss's terms (unless an objective replaces it) +
    the weighted objective terms. `terms` holds every unweighted term, detached.

    An objective replaces the loss only for CLIP models: `build_objectives` refuses DCL and the
    extra latent projection for CoCa (whose caption term would be dropped) and SigLIP models."""
    terms: dict[str, torch.Tensor] = {}
    metrics = None
    total = None
    if objectives is None or not objectives.replaces_contrastive_loss:
        accepted = _forward_parameters(loss_fn)
        inputs = {key: value for key, value in model_output.items() if key in accepted}
        loss_dict, metrics = loss_fn(**inputs, output_dict=True, return_metrics=True)
        terms.update(loss_dict)
        total = sum(value.float() for value in loss_dict.values())
    if objectives is not None:
        objective_terms = model_output["objective_terms"]
        for name in objective_terms:
            if name in terms:
                raise ValueError(f"objective term '{name}' collides with a loss term of the same name")
        terms.update(objective_terms)
        weighted = objectives.weighted_sum(objective_terms).float()
        total = weighted if total is None else total + weighted
    return LossOutput(total=total, terms={name: value.detach() for name, value in terms.items()},
                      metrics=metrics)


class ModelWithObjectives(nn.Module):
    """The model plus the x-clip objective heads as one module, so DDP and the optimiser see both.

    forward(images, tokens) -> the model's output dict plus "objective_terms": {name: 0-d loss}
    (unweighted; `compute_loss` weights and adds them). The heads are saved in train_state.pt.
    """

    def __init__(self, model: nn.Module, objectives: nn.Module):
        super().__init__()
        self.model = model
        self.objectives = objectives

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> dict[str, Any]:
        output = self.model(images, tokens)
        terms = self.objectives(self.model, {"images": images, "tokens": tokens}, output)
        return {**output, "objective_terms": terms}

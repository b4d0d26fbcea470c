"""Term "contrastive": the main image-text contrastive term computed here, when DCL or the extra
latent projection is on (`dcl_loss`, or `clip_loss` with only the projection); the training loop
then adds no contrastive loss of its own (`Objectives.replaces_contrastive_loss`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cliplab.config_checks import check_bool, check_number
from cliplab.objectives.terms.spec import HeadSizes, ObjectiveTerm, unsupported

if TYPE_CHECKING:
    import torch

    from cliplab.objectives.heads import ExtraLatentProjections
    from cliplab.objectives.term_inputs import TermInputs


@dataclass(kw_only=True)
class ContrastiveConfig:
    """How the main image-text contrastive term is computed.

    decoupled: DCL, the positive left out of the softmax denominator (also applied to FILIP and
    multiview). extra_latent_projection: a second pair of projections scores the image-to-text
    direction (x-clip / CLOOB). With either on, the objectives compute the main contrastive term
    themselves (`dcl_loss`, or `clip_loss` with only the extra projection) and the training loop
    must not add its own (see `Objectives.replaces_contrastive_loss`). weight: that term's weight.
    """

    decoupled: bool = False
    extra_latent_projection: bool = False
    weight: float = 1.0

    def __post_init__(self) -> None:
        check_bool("decoupled", self.decoupled)
        check_bool("extra_latent_projection", self.extra_latent_projection)
        check_number("weight", self.weight, low=0.0, low_inclusive=False)

    @property
    def replaces_standard_loss(self) -> bool:
        return self.decoupled or self.extra_latent_projection


# For these model kinds the loop's own loss is more than the softmax contrastive term.
_LOSS_REPLACEMENT_PROBLEMS = {
    "coca": "this objective replaces the model's own loss, whose captioning term would be dropped",
    "siglip": "this objective replaces the model's sigmoid loss with a softmax one, which would leave "
              "logit_bias without a gradient",
}


def check_support(section: ContrastiveConfig, model_config, tokenizer) -> None:
    kind = model_config.kind
    if kind in _LOSS_REPLACEMENT_PROBLEMS:
        term = "contrastive.decoupled" if section.decoupled else "contrastive.extra_latent_projection"
        raise unsupported(term, kind, f"{_LOSS_REPLACEMENT_PROBLEMS[kind]} (the term is available for kind "
                                      "'clip' models)")


def head(section: ContrastiveConfig, sizes: HeadSizes) -> ExtraLatentProjections | None:
    from cliplab.objectives.heads import ExtraLatentProjections

    return ExtraLatentProjections(sizes.embed_dim) if section.extra_latent_projection else None


def loss(inputs: TermInputs, section: ContrastiveConfig, head: ExtraLatentProjections | None) -> torch.Tensor:
    from cliplab.losses.xclip.dcl import global_contrastive_loss

    image_features_i2t, text_features_i2t = inputs.features_i2t
    return global_contrastive_loss(inputs.image_features, inputs.text_features, inputs.logit_scale,
                                   decoupled=section.decoupled, image_features_i2t=image_features_i2t,
                                   text_features_i2t=text_features_i2t)


TERM = ObjectiveTerm(
    section="contrastive", config=ContrastiveConfig,
    summary="DCL and/or x-clip's extra latent projection: the main contrastive term, replacing the loop's",
    names=("dcl_loss", "clip_loss"),
    choose_name=lambda section: "dcl_loss" if section.decoupled else "clip_loss",
    enabled=lambda section: section.replaces_standard_loss,
    reads=("image_features", "text_features", "logit_scale", "features_i2t"),
    needs=lambda section: ("embed_dim",) if section.extra_latent_projection else (),
    head_name="extra_projections", head=head, loss=loss, check_support=check_support,
)

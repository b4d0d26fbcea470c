"""Term "multiview": the contrastive loss between augmented views of the pairs (`multiview_loss`,
DeCLIP's), every (text view, image view) combination but (original, original)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cliplab.config_checks import check_bool, require
from cliplab.objectives.terms.spec import ObjectiveTerm, TermSection

if TYPE_CHECKING:
    import torch

    from cliplab.objectives.term_inputs import TermInputs


@dataclass(kw_only=True)
class MultiviewConfig(TermSection):
    """Contrastive loss between augmented views (`multiview_loss`).

    augment_images / augment_texts: which modalities get an augmented view (at least one).
    """

    weight: float = 0.1
    augment_images: bool = True
    augment_texts: bool = True

    def check(self) -> None:
        check_bool("augment_images", self.augment_images)
        check_bool("augment_texts", self.augment_texts)
        require(self.augment_images or self.augment_texts, "augment_texts", self.augment_texts,
                "or multiview.augment_images must be true")


def loss(inputs: TermInputs, section: MultiviewConfig, head: None) -> torch.Tensor:
    """Views: the originals, plus the first augmented image view and a token-dropped text (drawn
    after the image views)."""
    from cliplab.losses.xclip.multiview import multiview_contrastive_loss
    from cliplab.objectives.augment import drop_tokens

    image_views = [inputs.image_features] + (inputs.image_views[:1] if section.augment_images else [])
    text_views = [inputs.text_features]
    if section.augment_texts:
        vocabulary = inputs.vocabulary
        augmented_tokens = drop_tokens(inputs.tokens, protected_ids=vocabulary.protected_ids,
                                       pad_id=vocabulary.pad_id,
                                       drop_probability=inputs.augment.token_drop_probability,
                                       generator=inputs.generator)
        text_views.append(inputs.model.encode_text(augmented_tokens, normalize=False))
    image_views_i2t = text_views_i2t = None
    projections = inputs.extra_projections
    if projections is not None:
        image_features_i2t, text_features_i2t = inputs.features_i2t
        image_views_i2t = [image_features_i2t] + [projections.image_projection(view) for view in image_views[1:]]
        text_views_i2t = [text_features_i2t] + [projections.text_projection(view) for view in text_views[1:]]
    return multiview_contrastive_loss(image_views, text_views, inputs.logit_scale, decoupled=inputs.decoupled,
                                      image_views_i2t=image_views_i2t, text_views_i2t=text_views_i2t)


TERM = ObjectiveTerm(
    section="multiview", config=MultiviewConfig, names=("multiview_loss",),
    summary="contrastive loss between augmented image and text views (DeCLIP)",
    reads=("image_features", "text_features", "logit_scale", "features_i2t", "image_views", "tokens",
           "generator", "vocabulary"),
    needs=lambda section: ("pad_id",) if section.augment_texts else (),
    image_views=lambda section: int(section.augment_images), loss=loss,
)

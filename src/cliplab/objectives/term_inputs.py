"""`TermInputs`: one batch as every objective term's loss sees it (`ObjectiveTerm.loss`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from torch import nn

from cliplab.objectives.augment import random_resized_crop_and_flip
from cliplab.objectives.terms.spec import Vocabulary


@dataclass(kw_only=True, eq=False)
class TermInputs:
    """One batch as every term sees it.

    model: the unwrapped CLIP model (for the terms' own encoder passes); images [B, 3, H, W] float;
    tokens [B, T] long; image_features / text_features [B, E] (pooled, unnormalised) and logit_scale
    (exponentiated), the model's outputs; decoupled: the DCL switch (`objectives.contrastive`), which
    FILIP and multiview follow too; augment: the `objectives.augment` section; generator: the one
    generator of this call's draws; vocabulary: the tokenizer's ids; extra_projections: the
    contrastive term's second pair of projections, or None; image_view_count: how many augmented
    views `image_views` draws.
    """

    model: nn.Module
    images: torch.Tensor
    tokens: torch.Tensor
    image_features: torch.Tensor
    text_features: torch.Tensor
    logit_scale: torch.Tensor
    decoupled: bool
    augment: Any
    generator: torch.Generator
    vocabulary: Vocabulary
    extra_projections: nn.Module | None = None
    image_view_count: int = 0

    @cached_property
    def features_i2t(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(image [B, E], text [B, E]) latents that score the image-to-text direction through the
        extra projections; (None, None) without them."""
        if self.extra_projections is None:
            return None, None
        return self.extra_projections(self.image_features, self.text_features)

    @cached_property
    def image_views(self) -> list[torch.Tensor]:
        """Pooled, unnormalised latents [B, E] of `image_view_count` augmented views of the images,
        drawn on first use and shared by every term that reads them; one encoder call over all."""
        if self.image_view_count == 0:
            return []
        augment = self.augment
        views = [random_resized_crop_and_flip(self.images, crop_scale=augment.crop_scale, crop_ratio=augment.crop_ratio,
                                              flip_probability=augment.flip_probability, generator=self.generator)
                 for _ in range(self.image_view_count)]
        return list(self.model.encode_image(torch.cat(views), normalize=False).chunk(self.image_view_count))

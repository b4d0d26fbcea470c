"""Term "sim_reg": x-clip's similarity regulariser between the image-image and text-text
similarity structures (`sim_reg_loss`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cliplab.objectives.terms.spec import ObjectiveTerm, TermSection

if TYPE_CHECKING:
    import torch

    from cliplab.objectives.term_inputs import TermInputs


@dataclass(kw_only=True)
class SimRegConfig(TermSection):
    """Similarity regularisation between the image-image and text-text structures (`sim_reg_loss`)."""

    weight: float = 0.1


def loss(inputs: TermInputs, section: SimRegConfig, head: None) -> torch.Tensor:
    from cliplab.losses.xclip.sim_reg import similarity_regularization_loss

    return similarity_regularization_loss(inputs.image_features, inputs.text_features)


TERM = ObjectiveTerm(
    section="sim_reg", config=SimRegConfig, names=("sim_reg_loss",),
    summary="the image-image and text-text similarity structures pulled together",
    reads=("image_features", "text_features"), loss=loss,
)

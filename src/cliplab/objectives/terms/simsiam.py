"""Term "simsiam": SimSiam between two augmented views of each image (`simsiam_loss`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cliplab.config_checks import check_positive_int
from cliplab.objectives.terms.spec import HeadSizes, ObjectiveTerm, TermSection

if TYPE_CHECKING:
    import torch

    from cliplab.objectives.heads import SimSiamHead
    from cliplab.objectives.term_inputs import TermInputs


@dataclass(kw_only=True)
class SimSiamConfig(TermSection):
    """SimSiam on two augmentations of each image's pooled embedding (`simsiam_loss`).

    projector: Linear(E, hidden_dim)-BN-ReLU-Linear(hidden_dim, projection_dim)-BN;
    predictor: Linear(projection_dim, predictor_hidden_dim)-BN-ReLU-Linear(.., projection_dim).
    """

    weight: float = 0.05
    hidden_dim: int = 512
    projection_dim: int = 256
    predictor_hidden_dim: int = 128

    def check(self) -> None:
        for name in ("hidden_dim", "projection_dim", "predictor_hidden_dim"):
            check_positive_int(name, getattr(self, name))


def head(section: SimSiamConfig, sizes: HeadSizes) -> SimSiamHead:
    from cliplab.objectives.heads import SimSiamHead

    return SimSiamHead(sizes.embed_dim, section.hidden_dim, section.projection_dim, section.predictor_hidden_dim)


def loss(inputs: TermInputs, section: SimSiamConfig, head: SimSiamHead) -> torch.Tensor:
    from cliplab.losses.xclip.simsiam import simsiam_loss

    first_view, second_view = inputs.image_views[:2]
    projections_1, predictions_1 = head(first_view)
    projections_2, predictions_2 = head(second_view)
    return simsiam_loss(predictions_1, predictions_2, projections_1, projections_2)


TERM = ObjectiveTerm(
    section="simsiam", config=SimSiamConfig, names=("simsiam_loss",),
    summary="SimSiam between two augmented views of each image",
    reads=("image_views",), needs=lambda section: ("embed_dim",), image_views=lambda section: 2,
    head_name="simsiam_head", head=head, loss=loss,
)

"""Term "simclr": SimCLR's NT-Xent between two augmented views of each image (`simclr_loss`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cliplab.config_checks import check_number, check_positive_int
from cliplab.objectives.terms.spec import HeadSizes, ObjectiveTerm, TermSection

if TYPE_CHECKING:
    import torch

    from cliplab.objectives.heads import SimClrHead
    from cliplab.objectives.term_inputs import TermInputs


@dataclass(kw_only=True)
class SimClrConfig(TermSection):
    """SimCLR NT-Xent on two augmentations of each image's pooled embedding (`simclr_loss`).

    projection head: Linear(E, hidden_dim)-ReLU-Linear(hidden_dim, projection_dim).
    """

    weight: float = 0.05
    temperature: float = 0.1
    hidden_dim: int = 512
    projection_dim: int = 128

    def check(self) -> None:
        check_number("temperature", self.temperature, low=0.0, low_inclusive=False)
        check_positive_int("hidden_dim", self.hidden_dim)
        check_positive_int("projection_dim", self.projection_dim)


def head(section: SimClrConfig, sizes: HeadSizes) -> SimClrHead:
    from cliplab.objectives.heads import SimClrHead

    return SimClrHead(sizes.embed_dim, section.hidden_dim, section.projection_dim)


def loss(inputs: TermInputs, section: SimClrConfig, head: SimClrHead) -> torch.Tensor:
    from cliplab.losses.xclip.simclr import simclr_loss

    first_view, second_view = inputs.image_views[:2]
    return simclr_loss(head(first_view), head(second_view), temperature=section.temperature)


TERM = ObjectiveTerm(
    section="simclr", config=SimClrConfig, names=("simclr_loss",),
    summary="SimCLR's NT-Xent between two augmented views of each image",
    reads=("image_views",), needs=lambda section: ("embed_dim",), image_views=lambda section: 2,
    head_name="simclr_head", head=head, loss=loss,
)

"""Term "filip": fine-grained late interaction between image patches and text tokens (`filip_loss`,
x-clip's `use_all_token_embeds`), added to the main contrastive term."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cliplab.config_checks import check_positive_int
from cliplab.objectives.terms.spec import ObjectiveTerm, TermSection

if TYPE_CHECKING:
    import torch

    from cliplab.objectives.term_inputs import TermInputs


@dataclass(kw_only=True)
class FilipConfig(TermSection):
    """Fine-grained late interaction (`filip_loss`), added to the main contrastive term.

    tile_size: image/text columns scored at a time; memory O(B_local x tile_size x T x P).
    """

    weight: float = 1.0
    tile_size: int = 32

    def check(self) -> None:
        check_positive_int("tile_size", self.tile_size)


def loss(inputs: TermInputs, section: FilipConfig, head: None) -> torch.Tensor:
    from cliplab.losses.xclip.filip import filip_loss

    image_tokens = inputs.model.encode_image_tokens(inputs.images)  # [B, P, E]
    text_tokens, text_mask = inputs.model.encode_text_tokens(inputs.tokens)  # [B, T, E], [B, T]
    return filip_loss(image_tokens, text_tokens, text_mask, inputs.logit_scale, decoupled=inputs.decoupled,
                      tile_size=section.tile_size)


TERM = ObjectiveTerm(
    section="filip", config=FilipConfig, names=("filip_loss",),
    summary="FILIP: per-token late interaction between image patches and text tokens",
    reads=("images", "tokens", "logit_scale"), loss=loss,
)

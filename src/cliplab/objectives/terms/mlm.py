"""Term "mlm": masked language modelling on the text tower's hidden states (`mlm_loss`), BERT's
15% / 80-10-10 recipe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cliplab.config_checks import check_number, require
from cliplab.objectives.terms.spec import HeadSizes, ObjectiveTerm, TermSection, unsupported

if TYPE_CHECKING:
    import torch

    from cliplab.objectives.heads import MlmHead
    from cliplab.objectives.term_inputs import TermInputs


@dataclass(kw_only=True)
class MlmConfig(TermSection):
    """Masked language modelling on the text tower (`mlm_loss`); BERT's 15% / 80-10-10 recipe."""

    weight: float = 0.05
    mask_probability: float = 0.15
    mask_token_fraction: float = 0.8
    random_token_fraction: float = 0.1

    def check(self) -> None:
        check_number("mask_probability", self.mask_probability, low=0.0, high=1.0, low_inclusive=False)
        check_number("mask_token_fraction", self.mask_token_fraction, low=0.0, high=1.0)
        check_number("random_token_fraction", self.random_token_fraction, low=0.0, high=1.0)
        require(self.mask_token_fraction + self.random_token_fraction <= 1.0, "random_token_fraction",
                self.random_token_fraction, f"plus mlm.mask_token_fraction ({self.mask_token_fraction}) must be <= 1")


def check_support(section: MlmConfig, model_config, tokenizer) -> None:
    """The text tower's vocabulary holds the tokenizer's mask id and whole vocabulary."""
    kind, text_vocab = model_config.kind, model_config.text.vocab_size
    if not tokenizer.mask_id < text_vocab:
        raise unsupported("mlm", kind, f"the tokenizer's mask_id {tokenizer.mask_id} is outside the text tower's "
                                       f"vocabulary of {text_vocab} ids")
    if not tokenizer.vocab_size <= text_vocab:
        raise unsupported("mlm", kind, f"the tokenizer's vocabulary ({tokenizer.vocab_size}) is larger than the "
                                       f"text tower's ({text_vocab})")


def head(section: MlmConfig, sizes: HeadSizes) -> MlmHead:
    from cliplab.objectives.heads import MlmHead

    return MlmHead(sizes.text_width, sizes.vocab_size)


def loss(inputs: TermInputs, section: MlmConfig, head: MlmHead) -> torch.Tensor:
    from cliplab.losses.xclip.mlm import mask_tokens, mlm_loss

    vocabulary = inputs.vocabulary
    masked = mask_tokens(inputs.tokens, protected_ids=vocabulary.protected_ids, mask_id=vocabulary.mask_id,
                         vocab_size=vocabulary.vocab_size, mask_probability=section.mask_probability,
                         mask_token_fraction=section.mask_token_fraction,
                         random_token_fraction=section.random_token_fraction, generator=inputs.generator)
    hidden = inputs.model.text_tower.forward_tokens(masked.input_tokens)  # [B, T, W]
    selected_logits = head(hidden[masked.selected])  # [M, V]
    return mlm_loss(selected_logits, masked.target_tokens[masked.selected])


TERM = ObjectiveTerm(
    section="mlm", config=MlmConfig, names=("mlm_loss",),
    summary="masked language modelling on the text tower's hidden states",
    reads=("tokens", "generator", "vocabulary"),
    needs=lambda section: ("text_width", "vocab_size", "mask_id"),
    head_name="mlm_head", head=head,
    loss=loss, check_support=check_support,
)

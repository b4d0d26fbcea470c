"""`build_objectives`: check at start-up that the model and tokenizer support every enabled term,
then build the `Objectives` module with heads sized for them.

Sizes come from the model's typed `ModelConfig` (embed_dim, text width and vocabulary), ids from the
tokenizer. A term the model cannot serve fails here, naming the term, the model kind and what is
missing, rather than at the first step that needs it.
"""

from __future__ import annotations

import torch.nn as nn

from cliplab.data.tokenizer import Tokenizer
from cliplab.distributed.collectives import world_info
from cliplab.errors import InvalidInputError
from cliplab.models.config import ModelConfig
from cliplab.objectives.config import ObjectivesConfig
from cliplab.objectives.objectives import Objectives


class UnsupportedObjectiveError(InvalidInputError):
    """An enabled objective needs something the model or tokenizer does not provide."""


def _unsupported(term: str, kind: str, missing: str) -> UnsupportedObjectiveError:
    return UnsupportedObjectiveError(f"objective '{term}' is not supported by a {kind} model: {missing}")


# DCL and the extra latent projection replace the loop's own loss (`replaces_contrastive_loss`):
# for these model kinds that loss is more than the softmax contrastive term.
_LOSS_REPLACEMENT_PROBLEMS = {
    "coca": "this objective replaces the model's own loss, whose captioning term would be dropped",
    "siglip": "this objective replaces the model's sigmoid loss with a softmax one, which would leave "
              "logit_bias without a gradient",
}


def _check_support(config: ObjectivesConfig, model_config: ModelConfig, tokenizer: Tokenizer) -> None:
    """Every cliplab model has pooled and per-token latents and a text tower with hidden states, so
    what can be missing is a fit of the loss to the model kind, and of the tokenizer to the tower."""
    kind = model_config.kind
    if config.contrastive.replaces_standard_loss and kind in _LOSS_REPLACEMENT_PROBLEMS:
        term = ("contrastive.decoupled" if config.contrastive.decoupled
                else "contrastive.extra_latent_projection")
        raise _unsupported(
            term, kind, f"{_LOSS_REPLACEMENT_PROBLEMS[kind]} (the term is available for kind 'clip' models)")
    if config.mlm.enabled:
        text_vocab = model_config.text.vocab_size
        if not tokenizer.mask_id < text_vocab:
            raise _unsupported(
                "mlm", kind, f"the tokenizer's mask_id {tokenizer.mask_id} is outside the text tower's "
                             f"vocabulary of {text_vocab} ids")
        if not tokenizer.vocab_size <= text_vocab:
            raise _unsupported(
                "mlm", kind, f"the tokenizer's vocabulary ({tokenizer.vocab_size}) is larger than the "
                             f"text tower's ({text_vocab})")


def build_objectives(config: ObjectivesConfig, model: nn.Module, tokenizer: Tokenizer) -> Objectives:
    """Validate support for every enabled term and build the module that computes them.

    config: the `objectives` section; model: the unwrapped cliplab model (`cliplab.models.CLIP` or
    a subclass), read through its typed `model.config`; tokenizer: a `cliplab.data.tokenizer.Tokenizer`.
    The heads are sized from the model's config and placed on the model's device. The
    augmentation/masking generator is seeded with config.augment.seed plus this process's rank, so
    ranks draw different views. Raises UnsupportedObjectiveError (a UserError).
    """
    if not isinstance(config, ObjectivesConfig):
        raise ValueError(f"config must be an ObjectivesConfig, got {type(config).__name__}")
    model_config: ModelConfig = model.config
    _check_support(config, model_config, tokenizer)
    rank, _ = world_info()
    # None for a kind without a mask token (the OpenAI BPE); only MLM needs one, checked above.
    mask_id = getattr(tokenizer, "mask_id", None)
    # SigLIP's tokenizers have no start-of-text token either.
    role_ids = [getattr(tokenizer, name, None) for name in ("pad_id", "sot_id", "eot_id", "mask_id")]
    objectives = Objectives(
        config,
        embed_dim=model_config.embed_dim,
        text_width=model_config.text.width,
        vocab_size=tokenizer.vocab_size,
        protected_ids={*tokenizer.special_ids, *(token_id for token_id in role_ids if token_id is not None)},
        pad_id=tokenizer.pad_id,
        mask_id=mask_id,
        seed=config.augment.seed + rank,
    )
    return objectives.to(next(model.parameters()).device)

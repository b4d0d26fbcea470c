"""`build_objectives`: check at start-up that the model and tokenizer support every enabled term,
then build the `Objectives` module with heads sized for them.

Sizes come from the model's typed `ModelConfig` (embed_dim, text width and vocabulary), ids from the
tokenizer. A term the model cannot serve fails here (its entry's `check_support`), naming the term,
the model kind and what is missing, rather than at the first step that needs it. Every cliplab
model has pooled and per-token latents and a text tower with hidden states, so what can be missing
is a fit of the loss to the model kind, or of the tokenizer to the tower.
"""

from __future__ import annotations

import torch.nn as nn

from cliplab.data.tokenizer import Tokenizer
from cliplab.distributed.collectives import world_info
from cliplab.models.config import ModelConfig
from cliplab.objectives.config import ObjectivesConfig
from cliplab.objectives.objectives import Objectives
from cliplab.objectives.terms import OBJECTIVE_TERMS, UnsupportedObjectiveError


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
    for term in OBJECTIVE_TERMS:
        section = getattr(config, term.section)
        if term.enabled(section) and term.check_support is not None:
            term.check_support(section, model_config, tokenizer)
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


__all__ = ["UnsupportedObjectiveError", "build_objectives"]

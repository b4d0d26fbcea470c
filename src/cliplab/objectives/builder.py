"""`build_objectives`: check at start-up that the model and tokenizer support every enabled term,
then build the `Objectives` module with heads sized for them.

A term the model cannot serve fails here, naming the term, the model and what is missing, rather
than at the first step that needs it.
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from cliplab.distributed.collectives import world_info
from cliplab.errors import InvalidInputError
from cliplab.objectives.config import ObjectivesConfig
from cliplab.objectives.objectives import Objectives


class UnsupportedObjectiveError(InvalidInputError):
    """An enabled objective needs something the model or tokenizer does not provide."""

    def __init__(self, term: str, model: Any, missing: str):
        self.term, self.missing = term, missing
        super().__init__(f"objective '{term}' is not supported by model {_model_name(model)}: {missing}")


def _model_name(model: Any) -> str:
    config = getattr(model, "config", None)
    name = getattr(model, "name", None) or getattr(config, "name", None)
    return f"{type(model).__name__}" + (f" ({name!r})" if name else "")


def _has_method(owner: Any, name: str) -> bool:
    return callable(getattr(owner, name, None))


def _require_methods(term: str, model: Any, owner: Any, owner_name: str, names: tuple[str, ...]) -> None:
    for name in names:
        if not _has_method(owner, name):
            raise UnsupportedObjectiveError(term, model, f"it has no {owner_name}.{name}()")


def _first_int_attribute(candidates: list[tuple[Any, str]]) -> int | None:
    for owner, name in candidates:
        value = getattr(owner, name, None) if owner is not None else None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _embed_dim(model: Any) -> int | None:
    return _first_int_attribute([(model, "embed_dim"), (getattr(model, "config", None), "embed_dim")])


def _text_vocab_size(model: Any) -> int | None:
    text_tower = getattr(model, "text_tower", None)
    text_config = getattr(getattr(model, "config", None), "text", None)
    return _first_int_attribute([(text_tower, "vocab_size"), (text_config, "vocab_size")])


def _protected_ids(tokenizer: Any) -> set[int]:
    ids = {getattr(tokenizer, name, None) for name in ("pad_id", "sot_id", "eot_id", "mask_id")}
    ids |= set(getattr(tokenizer, "special_ids", ()) or ())
    return {int(i) for i in ids if i is not None}


def _model_kind(model: Any) -> str | None:
    kind = getattr(getattr(model, "config", None), "kind", None)
    return kind if isinstance(kind, str) else None


# DCL and the extra latent projection replace the loop's own loss (`replaces_contrastive_loss`):
# for these model kinds that loss is more than the softmax contrastive term.
_LOSS_REPLACEMENT_PROBLEMS = {
    "coca": "this objective replaces the model's own loss, whose captioning term would be dropped",
    "siglip": "this objective replaces the model's sigmoid loss with a softmax one, which would leave "
              "logit_bias without a gradient",
}


def _check_model(config: ObjectivesConfig, model: Any, tokenizer: Any) -> None:
    kind = _model_kind(model)
    if config.contrastive.replaces_standard_loss and kind in _LOSS_REPLACEMENT_PROBLEMS:
        term = ("contrastive.decoupled" if config.contrastive.decoupled
                else "contrastive.extra_latent_projection")
        raise UnsupportedObjectiveError(
            term, model, f"it is a {kind} model and {_LOSS_REPLACEMENT_PROBLEMS[kind]} (the term is available "
                         f"for kind 'clip' models)")
    pooled_terms = [name for name, on in (
        ("contrastive.extra_latent_projection", config.contrastive.extra_latent_projection),
        ("simsiam", config.simsiam.enabled), ("simclr", config.simclr.enabled)) if on]
    if pooled_terms and _embed_dim(model) is None:
        raise UnsupportedObjectiveError(pooled_terms[0], model,
                                        "its latent size is unknown (no model.embed_dim nor model.config.embed_dim)")
    if config.simsiam.enabled or config.simclr.enabled or (
            config.multiview.enabled and config.multiview.augment_images):
        term = "simsiam" if config.simsiam.enabled else "simclr" if config.simclr.enabled else "multiview"
        _require_methods(term, model, model, "model", ("encode_image",))
    if config.multiview.enabled and config.multiview.augment_texts:
        _require_methods("multiview", model, model, "model", ("encode_text",))
        if getattr(tokenizer, "pad_id", None) is None:
            raise UnsupportedObjectiveError("multiview", model, "the tokenizer has no pad_id for text augmentation")
    if config.filip.enabled:
        _require_methods("filip", model, model, "model", ("encode_image_tokens", "encode_text_tokens"))
        if getattr(model, "supports_token_latents", True) is False:
            raise UnsupportedObjectiveError("filip", model, "its towers produce no per-token latents")
    if config.mlm.enabled:
        text_tower = getattr(model, "text_tower", None)
        _require_methods("mlm", model, text_tower, "text_tower", ("forward_tokens",))
        if _first_int_attribute([(text_tower, "width")]) is None:
            raise UnsupportedObjectiveError("mlm", model, "text_tower.width (hidden size) is unknown")
        for name in ("mask_id", "vocab_size", "pad_id"):
            if getattr(tokenizer, name, None) is None:
                raise UnsupportedObjectiveError("mlm", model, f"the tokenizer has no {name}")
        text_vocab = _text_vocab_size(model)
        if text_vocab is None:
            raise UnsupportedObjectiveError("mlm", model, "its text vocabulary size is unknown")
        if not tokenizer.mask_id < text_vocab:
            raise UnsupportedObjectiveError(
                "mlm", model, f"the tokenizer's mask_id {tokenizer.mask_id} is outside the text tower's "
                              f"vocabulary of {text_vocab} ids")
        if not tokenizer.vocab_size <= text_vocab:
            raise UnsupportedObjectiveError(
                "mlm", model, f"the tokenizer's vocabulary ({tokenizer.vocab_size}) is larger than the text "
                              f"tower's ({text_vocab})")


def build_objectives(config: ObjectivesConfig, model: nn.Module, tokenizer: Any) -> Objectives:
    """Validate support for every enabled term and build the module that computes them.

    config: the `objectives` section; model: the CLIP model (unwrapped, or DDP-wrapped); tokenizer:
    a `cliplab.data.tokenizer.Tokenizer` (pad_id, sot_id, eot_id, mask_id, vocab_size,
    special_ids). The augmentation/masking generator is seeded with config.augment.seed plus this
    process's rank, so ranks draw different views. Raises UnsupportedObjectiveError (a ValueError).
    Move the returned module to the model's device before training.
    """
    if not isinstance(config, ObjectivesConfig):
        raise ValueError(f"config must be an ObjectivesConfig, got {type(config).__name__}")
    model = getattr(model, "module", model)
    _check_model(config, model, tokenizer)
    rank, _ = world_info()
    text_tower = getattr(model, "text_tower", None)
    objectives = Objectives(
        config,
        embed_dim=_embed_dim(model),
        text_width=getattr(text_tower, "width", None),
        vocab_size=getattr(tokenizer, "vocab_size", None),
        protected_ids=_protected_ids(tokenizer),
        pad_id=getattr(tokenizer, "pad_id", None),
        mask_id=getattr(tokenizer, "mask_id", None),
        seed=config.augment.seed + rank,
    )
    first_parameter = next(iter(model.parameters()), None)
    return objectives if first_parameter is None else objectives.to(first_parameter.device)

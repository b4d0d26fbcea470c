"""`Objectives`: computes the enabled x-clip terms for one batch, holding their parameters.

Contract with the training loop (see docs/objectives.md):

    objectives = build_objectives(config.objectives, model, tokenizer)   # once, at start-up
    outputs = model(images, tokens)                    # a model built with output_dict=True
    terms = objectives(model, batch, outputs)          # {name: unweighted 0-d loss}
    total = objectives.weighted_sum(terms)             # sum of weight * term
    if not objectives.replaces_contrastive_loss:
        total = total + contrastive_loss(outputs)      # the standard InfoNCE / SigLIP term
    log each terms[name] as loss/<name>

The module's parameters (heads) must be optimised and, under DDP, wrapped together with the model
(or in their own DDP): every one of them receives a gradient on every step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import torch.nn as nn

from cliplab.objectives.config import ObjectivesConfig
from cliplab.objectives.term_inputs import TermInputs
from cliplab.objectives.terms import OBJECTIVE_TERMS, HeadSizes, ObjectiveTerm, Vocabulary, objective_term


class Objectives(nn.Module):
    """The enabled terms (`OBJECTIVE_TERMS`' entries whose section is on) and their heads.

    config: the objectives section. embed_dim: E of the model's pooled latents (needed by the
    extra projection, SimSiam and SimCLR). text_width: W of the text tower's hidden states (MLM head
    input). vocab_size: tokenizer vocabulary (MLM head output, random replacements). protected_ids:
    token ids never masked nor dropped (specials and padding). pad_id / mask_id: the tokenizer's.
    seed: the augmentation and masking generator's seed. Heads exist only for enabled terms, each an
    attribute named by its entry's `head_name` (None when off). Prefer `build_objectives`, which
    also checks the model.

    The draws of forward call k come from a generator seeded with (seed, k) alone, and k is in the
    state dict (extra state, equal on every rank), so a run resumed from a checkpoint draws the same
    views and masks as the uninterrupted run.
    """

    def __init__(
        self,
        config: ObjectivesConfig,
        *,
        embed_dim: int | None = None,
        text_width: int | None = None,
        vocab_size: int | None = None,
        protected_ids: Iterable[int] = (),
        pad_id: int | None = None,
        mask_id: int | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if not isinstance(config, ObjectivesConfig):
            raise ValueError(f"config must be an ObjectivesConfig, got {type(config).__name__}")
        self.config = config
        pad_ids = set() if pad_id is None else {int(pad_id)}
        self.protected_ids = tuple(sorted(set(int(i) for i in protected_ids) | pad_ids))
        self.pad_id = pad_id
        self.mask_id = mask_id
        self.vocab_size = vocab_size
        self.seed = seed
        self.calls = 0  # forward calls so far
        self.generator = torch.Generator()
        self._seed_generator_for_next_call()

        self.enabled_terms: tuple[ObjectiveTerm, ...] = tuple(
            term for term in OBJECTIVE_TERMS if term.enabled(self._section(term)))
        sizes = HeadSizes(embed_dim=embed_dim, text_width=text_width, vocab_size=vocab_size, pad_id=pad_id,
                          mask_id=mask_id)
        for term in self.enabled_terms:
            missing = sizes.missing(term.needs(self._section(term)))
            if missing:
                raise ValueError(f"the {term.section} term needs {missing}, got "
                                 f"{ {name: getattr(sizes, name) for name in missing} }")
        for term in OBJECTIVE_TERMS:
            if term.head_name is not None:
                enabled = term in self.enabled_terms
                setattr(self, term.head_name, term.head(self._section(term), sizes) if enabled else None)
        self.image_view_count = max((term.image_views(self._section(term)) for term in self.enabled_terms),
                                    default=0)

    def _section(self, term: ObjectiveTerm):
        return getattr(self.config, term.section)

    @property
    def replaces_contrastive_loss(self) -> bool:
        """True when the main contrastive term is computed here (DCL or extra projection): the
        training loop must then not add its own contrastive loss."""
        return self.config.contrastive.replaces_standard_loss

    @property
    def contrastive_term_name(self) -> str | None:
        """The name of the main contrastive term when it is computed here (`dcl_loss` / `clip_loss`)."""
        if not self.replaces_contrastive_loss:
            return None
        return objective_term("contrastive").loss_name(self.config.contrastive)

    @property
    def weights(self) -> dict[str, float]:
        """Term name -> weight, for every term `forward` returns (in that order)."""
        return {term.loss_name(self._section(term)): term.weight(self._section(term)) for term in self.enabled_terms}

    @property
    def term_names(self) -> list[str]:
        return list(self.weights)

    def weighted_sum(self, terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """sum_name weight[name] * terms[name] over the enabled terms; 0-d. Raises on a missing term."""
        missing = [name for name in self.weights if name not in terms]
        if missing:
            raise ValueError(f"terms is missing {missing}; expected the output of Objectives.forward")
        if not self.weights:
            raise ValueError("no objective is enabled: there is nothing to sum")
        return sum(weight * terms[name] for name, weight in self.weights.items())

    def get_rng_state(self) -> torch.Tensor:
        """State of the generator the next forward call draws its augmentations and masks from."""
        return self.generator.get_state()

    def set_rng_state(self, state: torch.Tensor) -> None:
        """Make the next forward call draw from `state` (e.g. one saved to replay a micro-batch)."""
        self.generator.set_state(state)

    def _seed_generator_for_next_call(self) -> None:
        # torch seeds a CPU generator from the low 32 bits only: step through them with an odd
        # (golden-ratio) increment, so consecutive calls get distinct, well-spread seeds.
        self.generator.manual_seed((self.seed + self.calls * 0x9E3779B9) % 2**32)

    def get_extra_state(self) -> dict:
        return {"calls": self.calls}

    def set_extra_state(self, state: dict) -> None:
        self.calls = int(state["calls"])
        self._seed_generator_for_next_call()

    def forward(self, model: nn.Module, batch: Mapping[str, torch.Tensor],
                model_outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The unweighted value of every enabled term (names in `weights`), in table order.

        model: the (unwrapped or DDP-wrapped) CLIP model the outputs came from; batch: the loader's
        dict with images [B, 3, H, W] float and tokens [B, T] long; model_outputs: model(images,
        tokens) with image_features [B, E], text_features [B, E], logit_scale (exponentiated).
        Every returned value is a 0-d fp32 tensor; the in-batch-negative terms are global-batch
        losses identical on every rank (gradient convention in cliplab.losses.xclip.global_batch).
        """
        images, tokens = _batch_tensors(batch)
        image_features, text_features, logit_scale = _model_output_tensors(model_outputs)
        inputs = TermInputs(
            model=getattr(model, "module", model), images=images, tokens=tokens, image_features=image_features,
            text_features=text_features, logit_scale=logit_scale, decoupled=self.config.contrastive.decoupled,
            augment=self.config.augment, generator=self.generator,
            vocabulary=Vocabulary(protected_ids=self.protected_ids, pad_id=self.pad_id, mask_id=self.mask_id,
                                  vocab_size=self.vocab_size),
            # the contrastive term's head, which multiview's augmented views are projected with too
            extra_projections=self.extra_projections, image_view_count=self.image_view_count)
        terms: dict[str, torch.Tensor] = {}
        for term in self.enabled_terms:
            section = self._section(term)
            head = getattr(self, term.head_name) if term.head_name is not None else None
            terms[term.loss_name(section)] = term.loss(inputs, section, head)
        self.calls += 1
        self._seed_generator_for_next_call()
        return terms


def _batch_tensors(batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(batch, Mapping) or "images" not in batch or "tokens" not in batch:
        raise ValueError("batch must be a mapping with 'images' [B, 3, H, W] and 'tokens' [B, T]")
    images, tokens = batch["images"], batch["tokens"]
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"batch['images'] must be a [B, 3, H, W] tensor, got {tuple(getattr(images, 'shape', ()))}")
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.dtype != torch.long:
        raise ValueError(f"batch['tokens'] must be a [B, T] long tensor, got "
                         f"{getattr(tokens, 'dtype', type(tokens))} {tuple(getattr(tokens, 'shape', ()))}")
    if images.shape[0] != tokens.shape[0]:
        raise ValueError(f"batch['images'] and batch['tokens'] must have the same batch size, got "
                         f"{images.shape[0]} and {tokens.shape[0]}")
    return images, tokens


def _model_output_tensors(outputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    missing = [key for key in ("image_features", "text_features", "logit_scale")
               if not isinstance(outputs, Mapping) or key not in outputs]
    if missing:
        raise ValueError(f"model_outputs is missing {missing}; pass the dict the model's forward returned")
    return outputs["image_features"], outputs["text_features"], outputs["logit_scale"]

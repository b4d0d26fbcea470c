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

from cliplab.losses.xclip.dcl import global_contrastive_loss
from cliplab.losses.xclip.filip import filip_loss
from cliplab.losses.xclip.mlm import mask_tokens, mlm_loss
from cliplab.losses.xclip.multiview import multiview_contrastive_loss
from cliplab.losses.xclip.sim_reg import similarity_regularization_loss
from cliplab.losses.xclip.simclr import simclr_loss
from cliplab.losses.xclip.simsiam import simsiam_loss
from cliplab.objectives.augment import drop_tokens, random_resized_crop_and_flip
from cliplab.objectives.config import ObjectivesConfig
from cliplab.objectives.heads import ExtraLatentProjections, MlmHead, SimClrHead, SimSiamHead


class Objectives(nn.Module):
    """The enabled terms and their heads.

    config: the objectives section. embed_dim: E of the model's pooled latents (needed by the
    extra projection, SimSiam and SimCLR). text_width: W of
    the text tower's hidden states (MLM head input). vocab_size: tokenizer vocabulary (MLM head
    output, random replacements). protected_ids: token ids never masked nor dropped (specials and
    padding). pad_id / mask_id: the tokenizer's. seed: the augmentation and masking generator's seed.
    Heads exist only for enabled terms. Prefer `build_objectives`, which also checks the model.

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

        needs_embed_dim = [name for name, on in (
            ("contrastive.extra_latent_projection", config.contrastive.extra_latent_projection),
            ("simsiam", config.simsiam.enabled), ("simclr", config.simclr.enabled)) if on]
        if needs_embed_dim and not (isinstance(embed_dim, int) and embed_dim > 0):
            raise ValueError(f"embed_dim must be a positive int for {needs_embed_dim}, got {embed_dim!r}")
        if config.multiview.enabled and config.multiview.augment_texts and pad_id is None:
            raise ValueError("pad_id is needed to augment texts for the multiview term")
        self.extra_projections = (ExtraLatentProjections(embed_dim)
                                  if config.contrastive.extra_latent_projection else None)
        self.mlm_head = None
        if config.mlm.enabled:
            if text_width is None or vocab_size is None or mask_id is None:
                raise ValueError("the mlm term needs text_width, vocab_size and mask_id")
            self.mlm_head = MlmHead(text_width, vocab_size)
        self.simsiam_head = None
        if config.simsiam.enabled:
            self.simsiam_head = SimSiamHead(embed_dim, config.simsiam.hidden_dim, config.simsiam.projection_dim,
                                            config.simsiam.predictor_hidden_dim)
        self.simclr_head = (SimClrHead(embed_dim, config.simclr.hidden_dim, config.simclr.projection_dim)
                            if config.simclr.enabled else None)

    @property
    def replaces_contrastive_loss(self) -> bool:
        """True when the main contrastive term is computed here (DCL or extra projection): the
        training loop must then not add its own contrastive loss."""
        return self.config.contrastive.replaces_standard_loss

    @property
    def contrastive_term_name(self) -> str | None:
        if not self.replaces_contrastive_loss:
            return None
        return "dcl_loss" if self.config.contrastive.decoupled else "clip_loss"

    @property
    def weights(self) -> dict[str, float]:
        """Term name -> weight, for every term `forward` returns (in that order)."""
        config = self.config
        weights = {}
        if self.contrastive_term_name is not None:
            weights[self.contrastive_term_name] = config.contrastive.weight
        for name, section in (("filip_loss", config.filip), ("mlm_loss", config.mlm),
                              ("simsiam_loss", config.simsiam), ("simclr_loss", config.simclr),
                              ("multiview_loss", config.multiview), ("sim_reg_loss", config.sim_reg)):
            if section.enabled:
                weights[name] = section.weight
        return weights

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
        """The unweighted value of every enabled term (names in `weights`).

        model: the (unwrapped or DDP-wrapped) CLIP model the outputs came from; batch: the loader's
        dict with images [B, 3, H, W] float and tokens [B, T] long; model_outputs: model(images,
        tokens) with image_features [B, E], text_features [B, E], logit_scale (exponentiated).
        Every returned value is a 0-d fp32 tensor; the in-batch-negative terms are global-batch
        losses identical on every rank (gradient convention in cliplab.losses.xclip.global_batch).
        """
        model = getattr(model, "module", model)
        images, tokens = _batch_tensors(batch)
        image_features, text_features, logit_scale = _model_output_tensors(model_outputs)
        config = self.config
        terms: dict[str, torch.Tensor] = {}

        image_features_i2t = text_features_i2t = None
        if self.extra_projections is not None:
            image_features_i2t, text_features_i2t = self.extra_projections(image_features, text_features)
        if self.contrastive_term_name is not None:
            terms[self.contrastive_term_name] = global_contrastive_loss(
                image_features, text_features, logit_scale, decoupled=config.contrastive.decoupled,
                image_features_i2t=image_features_i2t, text_features_i2t=text_features_i2t)

        if config.filip.enabled:
            image_tokens = model.encode_image_tokens(images)
            text_tokens, text_mask = model.encode_text_tokens(tokens)
            terms["filip_loss"] = filip_loss(image_tokens, text_tokens, text_mask, logit_scale,
                                             decoupled=config.contrastive.decoupled,
                                             tile_size=config.filip.tile_size)

        if self.mlm_head is not None:
            terms["mlm_loss"] = self._mlm_loss(model, tokens)

        image_views = self._augmented_image_features(model, images)
        if self.simsiam_head is not None:
            projections_1, predictions_1 = self.simsiam_head(image_views[0])
            projections_2, predictions_2 = self.simsiam_head(image_views[1])
            terms["simsiam_loss"] = simsiam_loss(predictions_1, predictions_2, projections_1, projections_2)
        if self.simclr_head is not None:
            terms["simclr_loss"] = simclr_loss(self.simclr_head(image_views[0]), self.simclr_head(image_views[1]),
                                               temperature=config.simclr.temperature)

        if config.multiview.enabled:
            terms["multiview_loss"] = self._multiview_loss(
                model, tokens, logit_scale, image_features=image_features, text_features=text_features,
                image_features_i2t=image_features_i2t, text_features_i2t=text_features_i2t,
                augmented_image_features=image_views[:1])

        if config.sim_reg.enabled:
            terms["sim_reg_loss"] = similarity_regularization_loss(image_features, text_features)
        self.calls += 1
        self._seed_generator_for_next_call()
        return terms

    def _mlm_loss(self, model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        config = self.config.mlm
        masked = mask_tokens(tokens, protected_ids=self.protected_ids, mask_id=self.mask_id,
                             vocab_size=self.vocab_size, mask_probability=config.mask_probability,
                             mask_token_fraction=config.mask_token_fraction,
                             random_token_fraction=config.random_token_fraction, generator=self.generator)
        hidden = model.text_tower.forward_tokens(masked.input_tokens)  # [B, T, W]
        selected_logits = self.mlm_head(hidden[masked.selected])  # [M, V]
        return mlm_loss(selected_logits, masked.target_tokens[masked.selected])

    def _augmented_image_features(self, model: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
        """Pooled, unnormalised latents [B, E] of the augmented image views the terms need: two for
        SimSiam/SimCLR, whose first also serves multiview; one for multiview alone. One encoder
        call over all views."""
        config = self.config
        view_count = 2 if (config.simsiam.enabled or config.simclr.enabled) else int(
            config.multiview.enabled and config.multiview.augment_images)
        if view_count == 0:
            return []
        augment = config.augment
        views = [random_resized_crop_and_flip(images, crop_scale=augment.crop_scale, crop_ratio=augment.crop_ratio,
                                              flip_probability=augment.flip_probability, generator=self.generator)
                 for _ in range(view_count)]
        return list(model.encode_image(torch.cat(views), normalize=False).chunk(view_count))

    def _multiview_loss(
        self,
        model: nn.Module,
        tokens: torch.Tensor,
        logit_scale: torch.Tensor,
        *,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        image_features_i2t: torch.Tensor | None,
        text_features_i2t: torch.Tensor | None,
        augmented_image_features: list[torch.Tensor],
    ) -> torch.Tensor:
        """Views: the originals, plus the first augmented image view and a token-dropped text."""
        config = self.config
        image_view_features = [image_features] + (augmented_image_features if config.multiview.augment_images
                                                  else [])
        text_view_features = [text_features]
        if config.multiview.augment_texts:
            augmented_tokens = drop_tokens(tokens, protected_ids=self.protected_ids, pad_id=self.pad_id,
                                           drop_probability=config.augment.token_drop_probability,
                                           generator=self.generator)
            text_view_features.append(model.encode_text(augmented_tokens, normalize=False))
        image_views_i2t = text_views_i2t = None
        if self.extra_projections is not None:
            image_views_i2t, text_views_i2t = [image_features_i2t], [text_features_i2t]
            image_views_i2t += [self.extra_projections.image_projection(view) for view in image_view_features[1:]]
            text_views_i2t += [self.extra_projections.text_projection(view) for view in text_view_features[1:]]
        return multiview_contrastive_loss(image_view_features, text_view_features, logit_scale,
                                          decoupled=config.contrastive.decoupled,
                                          image_views_i2t=image_views_i2t, text_views_i2t=text_views_i2t)


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

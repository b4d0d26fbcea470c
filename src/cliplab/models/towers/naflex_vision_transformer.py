"""NaFlex vision transformer (SigLIP2's native-aspect-ratio tower): patches of any grid -> pooled vector.

Input, either
- a Mapping with the three tensors of `cliplab.data.naflex` (Hugging Face's names): `pixel_values`
  [B, N, P * P * 3], `pixel_attention_mask` [B, N] (1 real, 0 padding), `spatial_shapes` [B, 2]; or
- images [B, 3, H, W] with H and W multiples of P (fixed resolution: every patch real, one grid).

Then: a linear patch embedding; plus the learned [G, G] position grid resized to each image's grid
(`layers.naflex_positions`); pre-norm blocks in which padding is hidden from every query; the final
norm on every token; SigLIP's attention-probe head reading the real patches only.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from cliplab.data.naflex import NAFLEX_KEYS, image_patches
from cliplab.models.layers import BlockStack, ProbePooler, TransformerBlock, init_transformer_weights, mlp_hidden_width
from cliplab.models.layers.naflex_positions import resized_positions
from cliplab.models.towers.locking import GroupItem
from cliplab.models.towers.vision_transformer import block_options


def naflex_inputs(images, patch_size: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The tower's input (module docstring) -> (patches [B, N, P * P * 3], Bool[B, N] real patches
    or None when all are real, spatial_shapes Long[B, 2]). ValueError naming what is wrong."""
    if isinstance(images, Mapping):
        missing = [key for key in NAFLEX_KEYS if key not in images]
        if missing:
            raise ValueError(f"NaFlex images must hold {NAFLEX_KEYS}, missing {missing}")
        patches, mask, shapes = (images[key] for key in NAFLEX_KEYS)
        if patches.dim() != 3 or patches.shape[-1] != 3 * patch_size ** 2:
            raise ValueError(f"pixel_values must have shape [B, N, {3 * patch_size ** 2}], got {tuple(patches.shape)}")
        if tuple(mask.shape) != tuple(patches.shape[:2]) or tuple(shapes.shape) != (patches.shape[0], 2):
            raise ValueError(f"pixel_attention_mask must be [B, N] and spatial_shapes [B, 2] for pixel_values "
                             f"{tuple(patches.shape)}, got {tuple(mask.shape)} and {tuple(shapes.shape)}")
        return patches, mask.bool(), shapes
    if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.dim() != 4 \
            or images.shape[1] != 3 or images.shape[2] % patch_size or images.shape[3] % patch_size:
        raise ValueError(f"images must be a float tensor [B, 3, H, W] with H and W multiples of {patch_size}, or "
                         f"a mapping of {NAFLEX_KEYS}; got {getattr(images, 'shape', type(images).__name__)}")
    grid = [images.shape[2] // patch_size, images.shape[3] // patch_size]
    shapes = torch.tensor([grid], device=images.device).expand(images.shape[0], 2)
    return image_patches(images, patch_size), None, shapes


class NaFlexVisionTransformer(nn.Module):
    """images (module docstring) -> pooled [B, W] and tokens [B, N, W] (padding positions included:
    their values are to be ignored)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.width = self.token_width = config.width
        width = config.width
        self.patch_embedding = nn.Linear(3 * config.patch_size ** 2, width)
        self.position_embedding = nn.Parameter(torch.empty(config.position_grid ** 2, width))
        self.transformer = BlockStack([
            TransformerBlock(width, config.heads, config.mlp_ratio, config.dropout, **block_options(config))
            for _ in range(config.layers)])
        self.norm_post = nn.LayerNorm(width, eps=config.norm_eps)
        hidden = mlp_hidden_width(width, config.mlp_ratio, config.mlp_width)
        self.pooler = ProbePooler(width, config.heads, hidden, config.activation, config.norm_eps)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.position_embedding, std=self.config.width ** -0.5)
        init_transformer_weights(self.transformer, self.config.width)

    def forward_features(self, images) -> tuple[torch.Tensor, torch.Tensor]:
        """images -> (pooled [B, W], tokens [B, N, W] after the final norm)."""
        patches, is_real, shapes = naflex_inputs(images, self.config.patch_size)
        grid = self.position_embedding.reshape(self.config.position_grid, self.config.position_grid, -1)
        embedded = self.patch_embedding(patches.to(self.patch_embedding.weight.dtype))
        tokens = embedded + resized_positions(grid, shapes, patches.shape[1])
        attn_mask = None if is_real is None else is_real[:, None, None, :]
        tokens = self.norm_post(self.transformer(tokens, attn_mask=attn_mask))
        return self.pooler(tokens, is_real), tokens

    def forward(self, images) -> torch.Tensor:
        """images -> pooled [B, W]."""
        return self.forward_features(images)[0]

    def forward_tokens(self, images) -> torch.Tensor:
        """images -> tokens [B, N, W] (see the class docstring for padding)."""
        return self.forward_features(images)[1]

    def parameter_groups(self) -> list[list[GroupItem]]:
        """Locking groups, input to output: embeddings, each block, final norm with the probe head."""
        return [[self.patch_embedding, self.position_embedding], *([block] for block in self.transformer.blocks),
                [self.norm_post, self.pooler]]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.transformer.grad_checkpointing = enable

"""Vision transformer tower: patches -> pre-norm transformer -> pooled vector and patch tokens."""

from __future__ import annotations

import torch
from torch import nn

from cliplab.models.config import VisionConfig
from cliplab.models.layers import BlockStack, PatchDropout, TransformerBlock, init_transformer_weights
from cliplab.models.towers.locking import GroupItem


def check_images(images: torch.Tensor, image_size: int) -> None:
    """Raise ValueError unless images is a float [B, 3, image_size, image_size] tensor."""
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise ValueError(f"images must be a floating point tensor, got "
                         f"{getattr(images, 'dtype', type(images).__name__)}")
    if images.dim() != 4 or tuple(images.shape[1:]) != (3, image_size, image_size):
        raise ValueError(f"images must have shape [B, 3, {image_size}, {image_size}], "
                         f"got {tuple(images.shape)}")


class VisionTransformer(nn.Module):
    """images [B, 3, S, S] float -> pooled [B, W] and patch tokens [B, P, W], P = (S / patch)^2.

    Patch embedding (a strided conv), learned position embedding, optional class token, patch
    dropout (training only; P shrinks to the kept count), pre-norm, blocks, final norm. Pooling is
    the class token's state or the mean over patch tokens.
    """

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        self.width = config.width
        width, patch = config.width, config.patch_size
        self.patch_embedding = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.empty(width)) if config.pool == "cls" else None
        token_count = config.grid_size ** 2 + (1 if config.pool == "cls" else 0)
        self.position_embedding = nn.Parameter(torch.empty(token_count, width))
        self.patch_dropout = PatchDropout(config.patch_dropout)
        self.norm_pre = nn.LayerNorm(width)
        self.transformer = BlockStack([
            TransformerBlock(width, config.heads, config.mlp_ratio, config.dropout)
            for _ in range(config.layers)])
        self.norm_post = nn.LayerNorm(width)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        scale = self.width ** -0.5
        if self.class_embedding is not None:
            nn.init.normal_(self.class_embedding, std=scale)
        nn.init.normal_(self.position_embedding, std=scale)
        init_transformer_weights(self.transformer, self.width)

    def forward_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images [B, 3, S, S] -> (pooled [B, W], patch tokens [B, P', W]); P' < P under patch dropout."""
        check_images(images, self.config.image_size)
        patches = self.patch_embedding(images).flatten(2).transpose(1, 2)  # [B, P, W]
        if self.class_embedding is None:
            tokens = self.patch_dropout(patches + self.position_embedding)
        else:
            patches = self.patch_dropout(patches + self.position_embedding[1:])
            class_token = (self.class_embedding + self.position_embedding[0]).expand(patches.shape[0], 1, -1)
            tokens = torch.cat((class_token, patches), dim=1)
        tokens = self.norm_post(self.transformer(self.norm_pre(tokens)))
        if self.class_embedding is None:
            return tokens.mean(dim=1), tokens
        return tokens[:, 0], tokens[:, 1:]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, S, S] -> pooled [B, W]."""
        return self.forward_features(images)[0]

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, S, S] -> patch tokens [B, P, W] after the final norm (class token excluded)."""
        return self.forward_features(images)[1]

    def parameter_groups(self) -> list[list[GroupItem]]:
        """Locking groups, input to output: embeddings, each block, final norm."""
        embeddings: list[GroupItem] = [self.patch_embedding, self.position_embedding, self.norm_pre]
        if self.class_embedding is not None:
            embeddings.append(self.class_embedding)
        return [embeddings, *([block] for block in self.transformer.blocks), [self.norm_post]]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.transformer.grad_checkpointing = enable

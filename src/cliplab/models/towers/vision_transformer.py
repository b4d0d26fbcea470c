"""Vision transformer tower: patches -> pre-norm transformer -> pooled vector and patch tokens.

The options in `VisionConfig` cover cliplab's own layout, OpenAI/open_clip CLIP (class token,
norm before and after the blocks), CLIPA (mean pool after the blocks, final norm after pooling, no
norm before), CoCa (open_clip's attentional pooler) and SigLIP as Hugging Face lays it out (no
class token, biased patch embedding, attention-probe head).
"""

from __future__ import annotations

import torch
from torch import nn

from cliplab.models.tower_configs import VisionConfig
from cliplab.models.layers import (AttentionalPooler, BlockStack, PatchDropout, ProbePooler,
                                   TransformerBlock, init_transformer_weights, mlp_hidden_width)
from cliplab.models.towers.locking import GroupItem


def check_images(images: torch.Tensor, image_size: int) -> None:
    """Raise ValueError unless images is a float [B, 3, image_size, image_size] tensor."""
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise ValueError(f"images must be a floating point tensor, got "
                         f"{getattr(images, 'dtype', type(images).__name__)}")
    if images.dim() != 4 or tuple(images.shape[1:]) != (3, image_size, image_size):
        raise ValueError(f"images must have shape [B, 3, {image_size}, {image_size}], "
                         f"got {tuple(images.shape)}")


def block_options(config) -> dict:
    """The keyword options a tower config passes to every block (see `layers.blocks`)."""
    return {"mlp_width": config.mlp_width, "activation": config.activation,
            "norm_eps": config.norm_eps, "layer_scale": config.layer_scale}


class VisionTransformer(nn.Module):
    """images [B, 3, S, S] float -> pooled [B, W_out] and tokens [B, P, W_tok], P = (S / patch)^2.

    Patch embedding (a strided conv), learned position embedding, optional class token (first),
    patch dropout (training only; P shrinks to the kept count), optional pre-norm, blocks, final
    norm, pooling (see VisionConfig.pool). With pool="attention" the tokens are the pooler's other
    queries (P = queries - 1, width attention_pool_width); otherwise the patch tokens.
    """

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        self.width = config.output_width
        width, patch = config.width, config.patch_size
        self.patch_embedding = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=config.patch_bias)
        self.class_embedding = nn.Parameter(torch.empty(width)) if config.class_token else None
        token_count = config.grid_size ** 2 + (1 if config.class_token else 0)
        self.position_embedding = nn.Parameter(torch.empty(token_count, width))
        self.patch_dropout = PatchDropout(config.patch_dropout)
        self.norm_pre = nn.LayerNorm(width, eps=config.norm_eps) if config.norm_pre else nn.Identity()
        self.transformer = BlockStack([
            TransformerBlock(width, config.heads, config.mlp_ratio, config.dropout, **block_options(config))
            for _ in range(config.layers)])
        self.pooler = self._build_pooler(config)
        self.norm_post = nn.LayerNorm(config.output_width, eps=config.norm_eps)
        self.reset_parameters()

    @staticmethod
    def _build_pooler(config: VisionConfig) -> nn.Module | None:
        if config.pool == "attention":
            return AttentionalPooler(config.pool_width, config.width, config.attention_pool_heads,
                                     config.attention_pool_queries, config.norm_eps)
        if config.pool == "probe":
            hidden = mlp_hidden_width(config.width, config.mlp_ratio, config.mlp_width)
            return ProbePooler(config.width, config.heads, hidden, config.activation, config.norm_eps)
        return None

    def reset_parameters(self) -> None:
        scale = self.config.width ** -0.5
        if self.class_embedding is not None:
            nn.init.normal_(self.class_embedding, std=scale)
        nn.init.normal_(self.position_embedding, std=scale)
        init_transformer_weights(self.transformer, self.config.width)

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        """images -> tokens entering the blocks [B, (1 +) P', W], class token first when present."""
        check_images(images, self.config.image_size)
        patches = self.patch_embedding(images).flatten(2).transpose(1, 2)  # [B, P, W]
        if self.class_embedding is None:
            return self.norm_pre(self.patch_dropout(patches + self.position_embedding))
        patches = self.patch_dropout(patches + self.position_embedding[1:])
        class_token = (self.class_embedding + self.position_embedding[0]).expand(patches.shape[0], 1, -1)
        return self.norm_pre(torch.cat((class_token, patches), dim=1))

    def forward_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images [B, 3, S, S] -> (pooled [B, W_out], tokens [B, P', W_tok]); P' < P under patch dropout."""
        hidden = self.transformer(self._embed(images))
        pool, first = self.config.pool, 1 if self.class_embedding is not None else 0
        if pool == "attention":
            queries = self.norm_post(self.pooler(hidden))  # [B, Q, W_pool]
            return queries[:, 0], queries[:, 1:]
        if self.config.final_norm == "tokens":
            hidden = self.norm_post(hidden)
        patch_tokens = hidden[:, first:]
        if pool == "cls":
            pooled = hidden[:, 0]
        elif pool == "mean":
            pooled = patch_tokens.mean(dim=1)
        else:
            pooled = self.pooler(hidden)
        if self.config.final_norm == "pooled":
            pooled = self.norm_post(pooled)
        return pooled, patch_tokens

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, S, S] -> pooled [B, W_out]. Pooling the class token, the last block
        computes that token's row alone (its queries, output projection and MLP; every token is
        still a key): the other rows it would compute are read by nothing. Equal to
        `forward_features`' pooled vector up to float reassociation. Not under dropout in
        training: fewer positions would draw other masks."""
        if not self.pools_class_row_only:
            return self.forward_features(images)[0]
        pooled = self.transformer(self._embed(images), last_block_queries=1)[:, 0]
        return self.norm_post(pooled)

    @property
    def pools_class_row_only(self) -> bool:
        """Whether the pooled vector reads the class token's row of the last block alone."""
        return self.config.pool == "cls" and not (self.training and self.config.dropout > 0)

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, S, S] -> tokens [B, P, W_tok] (class token excluded; see forward_features)."""
        return self.forward_features(images)[1]

    @property
    def token_width(self) -> int:
        return self.config.pool_width if self.config.pool == "attention" else self.config.width

    def parameter_groups(self) -> list[list[GroupItem]]:
        """Locking groups, input to output: embeddings, each block, pooler with the final norm."""
        embeddings: list[GroupItem] = [self.patch_embedding, self.position_embedding, self.norm_pre]
        if self.class_embedding is not None:
            embeddings.append(self.class_embedding)
        head: list[GroupItem] = [self.norm_post] + ([self.pooler] if self.pooler is not None else [])
        return [embeddings, *([block] for block in self.transformer.blocks), head]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.transformer.grad_checkpointing = enable

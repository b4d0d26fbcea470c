"""timm's Eva vision transformer (EVA01, EVA02, Perception Encoder) from cliplab's layers, in the
order timm runs it; its config is `cliplab.models.families.timm_eva.TimmEvaConfig`.

images [B, 3, S, S] -> patch embedding (a strided conv; no bias when a norm follows the embedding)
-> class token first (when present) -> learned absolute positions added to every token -> optional
LayerNorm -> Eva blocks (2-D rotary positions on the patch tokens when configured) -> final
LayerNorm on every token (or, with fc_norm, after pooling) -> pooling: the class token, the mean of
the patch tokens, or an attention probe over all tokens ("map", timm's AttentionPoolLatent, which
is cliplab's `ProbePooler`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from cliplab.models.layers import BlockStack, ProbePooler
from cliplab.models.layers.eva_blocks import EvaBlock
from cliplab.models.layers.rotary_2d import axial_rotary_tables
from cliplab.models.towers.locking import GroupItem
from cliplab.models.towers.vision_transformer import check_images

if TYPE_CHECKING:
    from cliplab.models.families.timm_eva import TimmEvaConfig

TIMM_INIT_STD = 0.02


class EvaVisionTransformer(nn.Module):
    """images [B, 3, S, S] float -> pooled [B, W] and patch tokens [B, P, W], P = (S / patch)^2."""

    def __init__(self, config: TimmEvaConfig):
        super().__init__()
        self.config = config
        self.width = self.token_width = width = config.width
        self.prefix_tokens = int(config.class_token)
        self.patch_embedding = nn.Conv2d(3, width, kernel_size=config.patch_size, stride=config.patch_size,
                                         bias=not config.norm_pre)
        self.class_embedding = nn.Parameter(torch.empty(width)) if config.class_token else None
        self.position_embedding = nn.Parameter(torch.empty(config.grid_size ** 2 + self.prefix_tokens, width))
        self.norm_pre = nn.LayerNorm(width, eps=config.norm_eps) if config.norm_pre else nn.Identity()
        self.transformer = BlockStack([
            EvaBlock(width, config.heads, config.mlp_width, mlp=config.mlp, mlp_norm=config.mlp_norm,
                     qkv_bias=config.qkv_bias, attention_norm=config.attention_norm, post_norm=config.post_norm,
                     layer_scale=config.layer_scale, norm_eps=config.norm_eps)
            for _ in range(config.layers)])
        self.norm = nn.Identity() if config.fc_norm else nn.LayerNorm(width, eps=config.norm_eps)
        self.pooler = (ProbePooler(width, config.attention_pool_heads, int(width * config.attention_pool_mlp_ratio),
                                   "gelu", config.norm_eps) if config.pool == "map" else None)
        self.fc_norm = nn.LayerNorm(width, eps=config.norm_eps) if config.fc_norm else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """timm's initialisation: normal (std 0.02) for positions, class token and every Linear,
        zero biases, and the projections back into the residual stream of block i divided by
        sqrt(2 (i + 1)). timm truncates its normal at +-2, a hundred standard deviations away, so
        a plain normal draw is the same distribution; torch's truncated draw rejects samples in a
        data-dependent loop, which a sharded (FSDP2) build cannot replay shard by shard."""
        nn.init.normal_(self.position_embedding, std=TIMM_INIT_STD)
        if self.class_embedding is not None:
            nn.init.normal_(self.class_embedding, std=TIMM_INIT_STD)
        for module in [*self.transformer.modules(), *(self.pooler.modules() if self.pooler is not None else ())]:
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=TIMM_INIT_STD)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        with torch.no_grad():
            for index, block in enumerate(self.transformer.blocks):
                for layer in (block.attn.out, block.mlp.proj):
                    layer.weight.div_(math.sqrt(2.0 * (index + 1)))

    def rotary_tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(cos, sin) [P, head_dim] float32 of the patch grid, or None without rotary positions."""
        config = self.config
        if not config.rope:
            return None
        reference = tuple(config.rope_reference_grid) if config.rope_reference_grid is not None else None
        return axial_rotary_tables((config.grid_size, config.grid_size), config.width // config.heads,
                                   temperature=config.rope_temperature, offset=config.rope_grid_offset,
                                   reference_grid=reference, indexing=config.rope_grid_indexing, device=device)

    def forward_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images [B, 3, S, S] -> (pooled [B, W], patch tokens [B, P, W] after the final norm)."""
        check_images(images, self.config.image_size)
        tokens = self.patch_embedding(images).flatten(2).transpose(1, 2)  # [B, P, W]
        if self.class_embedding is not None:
            class_token = self.class_embedding.to(tokens.dtype).expand(tokens.shape[0], 1, -1)
            tokens = torch.cat((class_token, tokens), dim=1)
        tokens = self.norm_pre(tokens + self.position_embedding)
        hidden = self.norm(self.transformer(tokens, rotary=self.rotary_tables(images.device),
                                            skip=self.prefix_tokens))
        patch_tokens = hidden[:, self.prefix_tokens:]
        if self.pooler is not None:
            pooled = self.pooler(hidden)
        elif self.config.pool == "token":
            pooled = hidden[:, 0]
        else:
            pooled = patch_tokens.mean(dim=1)
        return self.fc_norm(pooled), patch_tokens

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_features(images)[0]

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_features(images)[1]

    def parameter_groups(self) -> list[list[GroupItem]]:
        """Locking groups as timm's `Eva.group_matcher` counts them: the embeddings (with norm_pre),
        each block (the final norm joins the last one), then whatever follows (the pooler and
        fc_norm; the model adds its projection, timm's `head`) when there is any."""
        embeddings: list[GroupItem] = [self.patch_embedding, self.position_embedding, self.norm_pre]
        if self.class_embedding is not None:
            embeddings.append(self.class_embedding)
        blocks: list[list[GroupItem]] = [[block] for block in self.transformer.blocks]
        blocks[-1].append(self.norm)
        head: list[GroupItem] = [self.fc_norm] + ([self.pooler] if self.pooler is not None else [])
        has_head = self.pooler is not None or self.config.fc_norm or self.config.projection != "none"
        return [embeddings, *blocks, *([head] if has_head else [])]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.transformer.grad_checkpointing = enable

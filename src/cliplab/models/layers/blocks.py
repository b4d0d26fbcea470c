"""Pre-norm transformer blocks and the block stack with optional gradient checkpointing.

x: [B, T, W] float throughout. Each block adds its branches to the residual stream:
x + attn(norm(x)), then x + mlp(norm(x)); the decoder block adds cross-attention in between.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from cliplab.models.layers.attention import CrossAttention, SelfAttention


class MLP(nn.Module):
    """Linear -> GELU -> Linear: [..., W] -> [..., W], hidden width W * mlp_ratio."""

    def __init__(self, width: int, mlp_ratio: float):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.fc = nn.Linear(width, hidden)
        self.activation = nn.GELU()
        self.proj = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.activation(self.fc(x)))


class TransformerBlock(nn.Module):
    """Pre-norm self-attention block: [B, T, W] -> [B, T, W]."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float = 0.0):
        super().__init__()
        self.norm_attn = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = MLP(width, mlp_ratio)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, causal: bool = False,
                rotary: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.norm_attn(x), attn_mask=attn_mask, causal=causal,
                                       rotary=rotary))
        return x + self.dropout(self.mlp(self.norm_mlp(x)))


class DecoderBlock(nn.Module):
    """Causal self-attention, cross-attention to a context, MLP: x [B, T, W], context [B, S, Wc]."""

    def __init__(self, width: int, context_width: int, heads: int, mlp_ratio: float,
                 dropout: float = 0.0):
        super().__init__()
        self.norm_attn = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.norm_cross = nn.LayerNorm(width)
        self.cross_attn = CrossAttention(width, context_width, heads)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = MLP(width, mlp_ratio)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.norm_attn(x), causal=True))
        x = x + self.dropout(self.cross_attn(self.norm_cross(x), context))
        return x + self.dropout(self.mlp(self.norm_mlp(x)))


class BlockStack(nn.Module):
    """Blocks applied in order; with `grad_checkpointing`, each block's activations are recomputed
    in backward instead of stored (non-reentrant checkpoint, which also replays the RNG so dropout
    matches)."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor, **block_kwargs) -> torch.Tensor:
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False, **block_kwargs)
            else:
                x = block(x, **block_kwargs)
        return x


def init_transformer_weights(stack: BlockStack, width: int) -> None:
    """CLIP's initialisation: attention inputs std W^-0.5, MLP input (2W)^-0.5, and the projections
    back into the residual stream std W^-0.5 (2L)^-0.5 so the stream's variance stays bounded in
    depth L. Biases start at zero, norms at identity."""
    layers = len(stack.blocks)
    attention_std = width ** -0.5
    residual_std = width ** -0.5 * (2 * layers) ** -0.5
    fc_std = (2 * width) ** -0.5
    for block in stack.blocks:
        attentions = [block.attn] + ([block.cross_attn] if hasattr(block, "cross_attn") else [])
        for attention in attentions:
            for name, linear in attention.named_children():
                std = residual_std if name == "out" else attention_std
                nn.init.normal_(linear.weight, std=std)
                nn.init.zeros_(linear.bias)
        nn.init.normal_(block.mlp.fc.weight, std=fc_std)
        nn.init.zeros_(block.mlp.fc.bias)
        nn.init.normal_(block.mlp.proj.weight, std=residual_std)
        nn.init.zeros_(block.mlp.proj.bias)

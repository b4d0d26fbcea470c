"""Pre-norm transformer blocks and the block stack with optional gradient checkpointing.

x: [B, T, W] float throughout. Each block adds its branches to the residual stream:
x + attn(norm(x)), then x + mlp(norm(x)); the decoder blocks add cross-attention to a context.
Every block takes the same keyword options: `mlp_width` (hidden width; default W * mlp_ratio,
truncated to an int as open_clip does), `activation` (see `activations.ACTIVATIONS`), `norm_eps`
and `layer_scale` (initial value of a learned per-channel scale on each branch, or None for none);
`TransformerBlock` also `qkv_bias` (see `SelfAttention`) and `drop_path` (stochastic depth of both
branches in training, see `drop_path.DropPath`; 0 for none).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from cliplab.models.layers.activations import make_activation
from cliplab.models.layers.attention import CrossAttention, SelfAttention
from cliplab.models.layers.drop_path import DropPath


class MLP(nn.Module):
    """Linear -> activation -> Linear: [..., W] -> [..., W] through a hidden width."""

    def __init__(self, width: int, hidden_width: int, activation: str = "gelu"):
        super().__init__()
        self.fc = nn.Linear(width, hidden_width)
        self.activation = make_activation(activation)
        self.proj = nn.Linear(hidden_width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.activation(self.fc(x)))


class LayerScale(nn.Module):
    """x [..., W] * gamma [W] (CaiT's layer scale; gamma starts at `initial_value`)."""

    def __init__(self, width: int, initial_value: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((width,), float(initial_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


def _branch_scale(width: int, layer_scale: float | None) -> nn.Module:
    return nn.Identity() if layer_scale is None else LayerScale(width, layer_scale)


def mlp_hidden_width(width: int, mlp_ratio: float, mlp_width: int | None) -> int:
    """The MLP's hidden width: `mlp_width` when given, else int(width * mlp_ratio)."""
    return mlp_width if mlp_width is not None else int(width * mlp_ratio)


class TransformerBlock(nn.Module):
    """Pre-norm self-attention block: [B, T, W] -> [B, T, W]."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0, *,
                 mlp_width: int | None = None, activation: str = "gelu", norm_eps: float = 1e-5,
                 layer_scale: float | None = None, qkv_bias: bool = True, drop_path: float = 0.0):
        super().__init__()
        self.norm_attn = nn.LayerNorm(width, eps=norm_eps)
        self.attn = SelfAttention(width, heads, qkv_bias=qkv_bias)
        self.scale_attn = _branch_scale(width, layer_scale)
        self.norm_mlp = nn.LayerNorm(width, eps=norm_eps)
        self.mlp = MLP(width, mlp_hidden_width(width, mlp_ratio, mlp_width), activation)
        self.scale_mlp = _branch_scale(width, layer_scale)
        self.dropout = nn.Dropout(dropout)
        self.drop_path = DropPath(drop_path) if drop_path else nn.Identity()

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, causal: bool = False,
                rotary: tuple[torch.Tensor, torch.Tensor] | None = None, queries: int | None = None
                ) -> torch.Tensor:
        """queries: the output of the first `queries` positions only, [B, queries, W] (every
        position still a key; see `SelfAttention.forward`)."""
        attended = self.attn(self.norm_attn(x), attn_mask=attn_mask, causal=causal, rotary=rotary, queries=queries)
        if queries is not None:
            x = x[:, :queries]
        x = x + self.drop_path(self.dropout(self.scale_attn(attended)))
        return x + self.drop_path(self.dropout(self.scale_mlp(self.mlp(self.norm_mlp(x)))))


class DecoderBlock(nn.Module):
    """Causal self-attention, cross-attention to a context, one MLP: x [B, T, W], context
    [B, S, Wc] -> [B, T, W] (cliplab's "fused" decoder layout; the context enters un-normalised)."""

    def __init__(self, width: int, context_width: int, heads: int, mlp_ratio: float = 4.0,
                 dropout: float = 0.0, *, mlp_width: int | None = None, activation: str = "gelu",
                 norm_eps: float = 1e-5):
        super().__init__()
        self.norm_attn = nn.LayerNorm(width, eps=norm_eps)
        self.attn = SelfAttention(width, heads)
        self.norm_cross = nn.LayerNorm(width, eps=norm_eps)
        self.cross_attn = CrossAttention(width, context_width, heads)
        self.norm_mlp = nn.LayerNorm(width, eps=norm_eps)
        self.mlp = MLP(width, mlp_hidden_width(width, mlp_ratio, mlp_width), activation)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.norm_attn(x), causal=True))
        x = x + self.dropout(self.cross_attn(self.norm_cross(x), context))
        return x + self.dropout(self.mlp(self.norm_mlp(x)))


class CrossAttentionBlock(nn.Module):
    """Cross-attention with its own MLP: x [B, T, W], context [B, S, Wc] -> [B, T, W].

    Queries and context each pass their own LayerNorm first (open_clip's cross-attention block).
    """

    def __init__(self, width: int, context_width: int, heads: int, mlp_ratio: float = 4.0,
                 dropout: float = 0.0, *, mlp_width: int | None = None, activation: str = "gelu",
                 norm_eps: float = 1e-5, layer_scale: float | None = None):
        super().__init__()
        self.norm_attn = nn.LayerNorm(width, eps=norm_eps)
        self.norm_context = nn.LayerNorm(context_width, eps=norm_eps)
        self.cross_attn = CrossAttention(width, context_width, heads)
        self.scale_attn = _branch_scale(width, layer_scale)
        self.norm_mlp = nn.LayerNorm(width, eps=norm_eps)
        self.mlp = MLP(width, mlp_hidden_width(width, mlp_ratio, mlp_width), activation)
        self.scale_mlp = _branch_scale(width, layer_scale)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        attended = self.cross_attn(self.norm_attn(x), self.norm_context(context))
        x = x + self.dropout(self.scale_attn(attended))
        return x + self.dropout(self.scale_mlp(self.mlp(self.norm_mlp(x))))


class SplitDecoderLayer(nn.Module):
    """A causal self-attention block, then a cross-attention block, each with its own MLP
    (open_clip's CoCa decoder layout, "split"): x [B, T, W], context [B, S, Wc] -> [B, T, W]."""

    def __init__(self, width: int, context_width: int, heads: int, mlp_ratio: float = 4.0,
                 dropout: float = 0.0, **block_options):
        super().__init__()
        self.self_block = TransformerBlock(width, heads, mlp_ratio, dropout, **block_options)
        self.cross_block = CrossAttentionBlock(width, context_width, heads, mlp_ratio, dropout,
                                               **block_options)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.cross_block(self.self_block(x, causal=True), context)


def run_in_order(modules, x: torch.Tensor, checkpointing: bool, **kwargs) -> torch.Tensor:
    """x through `modules` in order. With `checkpointing` (and autograd on), each module's
    activations are recomputed in backward instead of stored (non-reentrant checkpoint, which also
    replays the RNG so dropout matches)."""
    for module in modules:
        if checkpointing and torch.is_grad_enabled():
            x = checkpoint(module, x, use_reentrant=False, **kwargs)
        else:
            x = module(x, **kwargs)
    return x


class BlockStack(nn.Module):
    """Blocks applied in order; with `grad_checkpointing`, each block's activations are recomputed
    in backward instead of stored (`run_in_order`)."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor, *, last_block_queries: int | None = None, **block_kwargs) -> torch.Tensor:
        """last_block_queries: the last block computes the first that many positions only (what a
        class-token pooling reads; `TransformerBlock.forward`'s queries)."""
        if last_block_queries is None:
            return run_in_order(self.blocks, x, self.grad_checkpointing, **block_kwargs)
        x = run_in_order(self.blocks[:-1], x, self.grad_checkpointing, **block_kwargs)
        return run_in_order(self.blocks[-1:], x, self.grad_checkpointing, queries=last_block_queries, **block_kwargs)


def init_transformer_weights(stack: BlockStack, width: int) -> None:
    """CLIP's initialisation: attention inputs std W^-0.5, MLP input (2W)^-0.5, and the projections
    back into the residual stream std W^-0.5 (2L)^-0.5 so the stream's variance stays bounded in
    depth L. Biases start at zero, norms at identity. Modules are visited in registration order,
    so the random draws follow the blocks' layout."""
    layers = len(stack.blocks)
    attention_std = width ** -0.5
    residual_std = width ** -0.5 * (2 * layers) ** -0.5
    fc_std = (2 * width) ** -0.5
    for module in stack.modules():
        if isinstance(module, (SelfAttention, CrossAttention)):
            for name, linear in module.named_children():
                nn.init.normal_(linear.weight, std=residual_std if name == "out" else attention_std)
                if linear.bias is not None:
                    nn.init.zeros_(linear.bias)
        elif isinstance(module, MLP):
            nn.init.normal_(module.fc.weight, std=fc_std)
            nn.init.zeros_(module.fc.bias)
            nn.init.normal_(module.proj.weight, std=residual_std)
            nn.init.zeros_(module.proj.bias)

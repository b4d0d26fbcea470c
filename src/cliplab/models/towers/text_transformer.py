"""Text transformer tower: token ids -> pooled vector and per-token hidden states.

Tokens are right-padded with `pad_id`. With cliplab's default `padding_mask="keys"`, padding is
masked out of every attention's keys and out of pooling, so what sits in padded positions never
changes a real token's state or the pooled vector. The other options reproduce open_clip, OpenAI and
Hugging Face towers exactly (see TextConfig): e.g. OpenAI BPE's id 0 is "!", a real token, and
open_clip neither masks it nor pools by it (it pools at the largest id, end-of-text).
"""

from __future__ import annotations

import torch
from torch import nn

from cliplab.models.tower_configs import TextConfig
from cliplab.models.layers import (BlockStack, TransformerBlock, init_transformer_weights,
                                   key_padding_attention_mask, rotary_cos_sin)
from cliplab.models.towers.locking import GroupItem
from cliplab.models.towers.vision_transformer import block_options


def check_tokens(tokens: torch.Tensor, context_length: int) -> None:
    """ValueError unless `tokens` is an int64/int32 [B, T] tensor with 1 <= T <= context_length."""
    if not isinstance(tokens, torch.Tensor) or tokens.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"tokens must be an int64/int32 tensor, got {getattr(tokens, 'dtype', type(tokens).__name__)}")
    if tokens.dim() != 2 or not 1 <= tokens.shape[1] <= context_length:
        raise ValueError(f"tokens must have shape [B, T] with 1 <= T <= context_length={context_length}, "
                         f"got {tuple(tokens.shape)}")


def last_real_index(is_real: torch.Tensor) -> torch.Tensor:
    """is_real Bool[B, T] -> Long[B]: index of the last True per row (0 for an all-padding row).

    With right padding this is the end-of-text position, whatever id end-of-text has.
    """
    positions = torch.arange(1, is_real.shape[1] + 1, device=is_real.device)
    return ((is_real * positions).amax(dim=1) - 1).clamp(min=0)


def masked_mean(hidden: torch.Tensor, is_real: torch.Tensor) -> torch.Tensor:
    """hidden [B, T, W], is_real Bool[B, T] -> mean over real tokens [B, W]."""
    weights = is_real.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def pool_index(tokens: torch.Tensor, is_real: torch.Tensor, pool: str, eos_id: int | None) -> torch.Tensor:
    """tokens Long[B, T] -> the position each row is pooled at, Long[B], for pool "eot" (last
    non-pad), "argmax" (largest id, first on ties), "eos" (first eos_id, 0 when absent), "last"."""
    if pool == "eot":
        return last_real_index(is_real)
    if pool == "argmax":
        return tokens.argmax(dim=-1)
    if pool == "eos":
        return (tokens == eos_id).int().argmax(dim=-1)
    return torch.full((tokens.shape[0],), tokens.shape[1] - 1, dtype=torch.long, device=tokens.device)


def attention_mask(is_real: torch.Tensor, padding_mask: str, causal: bool, class_token: bool
                   ) -> torch.Tensor | None:
    """The mask for the blocks: Bool[B, 1, L, L] (True = may attend), or None when only a causal
    mask (or nothing) applies. is_real Bool[B, T]; L = T + 1 with an appended class token."""
    if padding_mask == "none":
        return None
    ones = is_real.new_ones(is_real.shape[0], 1)
    if padding_mask == "keys":
        return key_padding_attention_mask(torch.cat((is_real, ones), dim=1) if class_token else is_real,
                                          causal=causal)
    # "shifted": open_clip's CoCa mask puts the class token's flag first, so key j carries the flag
    # of token j - 1 and the first key is always visible.
    shifted = torch.cat((ones, is_real), dim=1)[:, :is_real.shape[1] + (1 if class_token else 0)]
    length = shifted.shape[1]
    allowed = shifted[:, None, None, :].expand(-1, 1, length, -1)
    if causal:
        allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=is_real.device).tril()
    return allowed


class TextTransformer(nn.Module):
    """tokens Long[B, T] (T <= context_length) -> pooled [B, W] and hidden states [B, T, W].

    Token embedding, learned absolute or rotary positions, optional class token appended after the
    T tokens (with position T when class_token_position), pre-norm blocks (causal or bidirectional)
    under the configured padding mask, final norm (every token or the pooled vector), pooling.
    """

    def __init__(self, config: TextConfig):
        super().__init__()
        self.config = config
        self.width = config.width
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.position_embedding = (nn.Parameter(torch.empty(config.position_count, config.width))
                                   if config.position == "learned" else None)
        self.class_embedding = nn.Parameter(torch.empty(config.width)) if config.pool == "cls" else None
        self.transformer = BlockStack([
            TransformerBlock(config.width, config.heads, config.mlp_ratio, config.dropout, **block_options(config))
            for _ in range(config.layers)])
        self.norm_final = nn.LayerNorm(config.width, eps=config.norm_eps)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        if self.position_embedding is not None:
            nn.init.normal_(self.position_embedding, std=0.01)
        if self.class_embedding is not None:
            nn.init.normal_(self.class_embedding, std=0.02)
        init_transformer_weights(self.transformer, self.width)

    def check_tokens(self, tokens: torch.Tensor) -> None:
        check_tokens(tokens, self.config.context_length)

    def forward_features(self, tokens: torch.Tensor, with_class_token: bool = True
                         ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """tokens [B, T] -> (pooled [B, W] or None, hidden [B, T, W], is_real Bool[B, T]).

        with_class_token=False skips the class token (pooled is then None for pool="cls"); with a
        causal mask the token states are the same either way, since the class token comes last.
        """
        config = self.config
        self.check_tokens(tokens)
        tokens = tokens.long()
        is_real = tokens != config.pad_id
        hidden = self.token_embedding(tokens)  # [B, T, W]
        length = tokens.shape[1]
        if self.position_embedding is not None:
            hidden = hidden + self.position_embedding[:length]
        append_class = with_class_token and self.class_embedding is not None
        if append_class:
            class_token = self.class_embedding.to(hidden.dtype)
            if config.class_token_position:
                class_token = class_token + self.position_embedding[length]
            hidden = torch.cat((hidden, class_token.expand(hidden.shape[0], 1, -1)), dim=1)
        attn_mask = attention_mask(is_real, config.padding_mask, config.causal, append_class)
        rotary = None
        if config.position == "rotary":
            rotary = rotary_cos_sin(hidden.shape[1], self.width // config.heads,
                                    config.rotary_base, device=hidden.device, dtype=hidden.dtype)
        hidden = self.transformer(hidden, attn_mask=attn_mask, causal=config.causal and attn_mask is None,
                                  rotary=rotary)
        if config.final_norm == "tokens":
            hidden = self.norm_final(hidden)
        if append_class:
            pooled, hidden = hidden[:, -1], hidden[:, :-1]
        elif config.pool == "cls":
            pooled = None
        elif config.pool == "mean":
            pooled = masked_mean(hidden, is_real)
        else:
            rows = torch.arange(hidden.shape[0], device=hidden.device)
            pooled = hidden[rows, pool_index(tokens, is_real, config.pool, config.eos_id)]
        if config.final_norm == "pooled" and pooled is not None:
            pooled = self.norm_final(pooled)
        return pooled, hidden, is_real

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T] -> pooled [B, W]. Outside training the blocks run on the columns that
        decide it only (`pooled_prefix_length`: for a causal tower, up to the batch's last
        end-of-text). In training on every column given: a training step cuts the tokens of its
        whole global batch to one prefix (`cliplab.train.step.text_prefix`), so that every rank and
        micro-batch runs the shapes one process with the global batch runs."""
        self.check_tokens(tokens)
        if not self.training:
            tokens = tokens[:, :self.pooled_prefix_length(tokens)]
        return self.forward_features(tokens)[0]

    def trainable_prefix_length(self, tokens: torch.Tensor) -> int:
        """`pooled_prefix_length`, except T under dropout in training (fewer positions would draw
        other dropout masks)."""
        if self.training and self.config.dropout > 0:
            return tokens.shape[1]
        return self.pooled_prefix_length(tokens)

    def pooled_prefix_length(self, tokens: torch.Tensor) -> int:
        """The fewest leading columns of tokens [B, T] that give every row the pooled vector all T
        give (float reassociation aside): what evaluation feeds, since prompts are far shorter than
        the context. With a causal mask, or padding masked out of every key, the columns after a
        row's last real token and its pooled position are read by nothing kept; pools "last" and
        "cls" read the end, and a bidirectional tower without a key mask reads everything: T."""
        config = self.config
        if config.pool not in ("eot", "argmax", "eos", "mean") or not (config.causal or config.padding_mask == "keys"):
            return tokens.shape[1]
        is_real = tokens != config.pad_id
        needed = last_real_index(is_real)
        if config.pool != "mean":
            needed = torch.maximum(needed, pool_index(tokens.long(), is_real, config.pool, config.eos_id))
        return int(needed.max()) + 1

    def forward_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T] -> hidden states [B, T, W] (class token excluded; after the final norm
        unless final_norm="pooled")."""
        return self.forward_features(tokens, with_class_token=not self.config.causal)[1]

    def parameter_groups(self) -> list[list[GroupItem]]:
        """Locking groups, input to output: embeddings, each block, final norm."""
        embeddings: list[GroupItem] = [self.token_embedding]
        embeddings += [parameter for parameter in (self.position_embedding, self.class_embedding)
                       if parameter is not None]
        return [embeddings, *([block] for block in self.transformer.blocks), [self.norm_final]]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.transformer.grad_checkpointing = enable

"""Fine-grained late interaction (FILIP, arXiv 2111.07783; x-clip `use_all_token_embeds`).

Image i and text j are compared token by token. With u_jt the L2-normalised latent of text j's
token t (real tokens only, M_j of them) and v_ip that of image i's patch p (P patches):

    text-to-image  sim_t2i(j, i) = (1 / M_j) sum_{t real} max_p  <u_jt, v_ip>
    image-to-text  sim_i2t(i, j) = (1 / P)   sum_p        max_{t real} <v_ip, u_jt>

Each direction feeds a contrastive loss (InfoNCE, or DCL when decoupled) with logits
logit_scale * sim: text j's softmax runs over all images, image i's over all texts.

The full token-patch tensor is O(B^2 x T x P). It is never built: the columns are visited in tiles
of `tile_size`, so the largest live tensor is [B_local, tile_size, T, P], and since a max with
indices keeps only the indices for backward, what stays for backward is O(B_local x B_global x
(T + P)). Padding tokens are zeroed before any product and excluded from both the max and the
mean, so their latents cannot change the loss or receive gradient.
"""

from __future__ import annotations

import torch

from cliplab.losses.common import DEFAULT_MAX_LOGIT_SCALE, check_paired_sizes, clamp_logit_scale, to_fp32_features
from cliplab.losses.xclip.dcl import contrastive_row_losses
from cliplab.losses.xclip.global_batch import (
    gather_columns,
    gather_columns_no_grad,
    locate_rows,
    sum_shares_over_ranks,
)


def _check_tile_size(tile_size: int) -> None:
    if not isinstance(tile_size, int) or isinstance(tile_size, bool) or tile_size < 1:
        raise ValueError(f"tile_size must be a positive int, got {tile_size!r}")


def text_to_image_similarity(
    text_tokens: torch.Tensor, text_mask: torch.Tensor, image_tokens: torch.Tensor, *, tile_size: int
) -> torch.Tensor:
    """sim_t2i for every (text row, image column) pair.

    text_tokens: [R, T, E] normalised fp32 with padding zeroed; text_mask: [R, T] bool, True on real
    tokens (at least one per row); image_tokens: [C, P, E] normalised fp32. Returns [R, C] fp32.
    """
    _check_tile_size(tile_size)
    real_token_counts = text_mask.sum(dim=1).to(text_tokens.dtype)  # [R]
    tiles = []
    for start in range(0, image_tokens.shape[0], tile_size):
        image_tile = image_tokens[start:start + tile_size]  # [c, P, E]
        token_patch = torch.einsum("rte,cpe->rctp", text_tokens, image_tile)  # [R, c, T, P]
        best_patch = token_patch.max(dim=3).values  # [R, c, T]
        best_patch = best_patch.masked_fill(~text_mask[:, None, :], 0.0)
        tiles.append(best_patch.sum(dim=2) / real_token_counts[:, None])  # [R, c]
    return torch.cat(tiles, dim=1)


def image_to_text_similarity(
    image_tokens: torch.Tensor, text_tokens: torch.Tensor, text_mask: torch.Tensor, *, tile_size: int
) -> torch.Tensor:
    """sim_i2t for every (image row, text column) pair.

    image_tokens: [R, P, E] normalised fp32; text_tokens: [C, T, E] normalised fp32 with padding
    zeroed; text_mask: [C, T] bool, True on real tokens (at least one per row). Returns [R, C] fp32.
    """
    _check_tile_size(tile_size)
    tiles = []
    for start in range(0, text_tokens.shape[0], tile_size):
        text_tile = text_tokens[start:start + tile_size]  # [c, T, E]
        mask_tile = text_mask[start:start + tile_size]  # [c, T]
        patch_token = torch.einsum("rpe,cte->rcpt", image_tokens, text_tile)  # [R, c, P, T]
        patch_token = patch_token.masked_fill(~mask_tile[None, :, None, :], float("-inf"))
        best_token = patch_token.max(dim=3).values  # [R, c, P]
        tiles.append(best_token.mean(dim=2))  # [R, c]
    return torch.cat(tiles, dim=1)


def check_token_latents(image_tokens: torch.Tensor, text_tokens: torch.Tensor, text_mask: torch.Tensor) -> None:
    """Raise ValueError unless image [B, P, E], text [B, T, E] float and mask [B, T] bool agree."""
    for name, tokens in (("image_tokens", image_tokens), ("text_tokens", text_tokens)):
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 3 or not tokens.is_floating_point():
            shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise ValueError(f"{name} must be a 3-D float tensor [batch, tokens, dim], got {shape}")
    if not isinstance(text_mask, torch.Tensor) or text_mask.dtype != torch.bool:
        raise ValueError(f"text_mask must be a bool tensor, got {getattr(text_mask, 'dtype', type(text_mask))}")
    if text_mask.shape != text_tokens.shape[:2]:
        raise ValueError(f"text_mask must have shape {tuple(text_tokens.shape[:2])}, got {tuple(text_mask.shape)}")
    check_paired_sizes(image_tokens, text_tokens, "image_tokens", "text_tokens", feature_axis=2,
                       feature_size="latent size")
    if image_tokens.shape[0] == 0 or image_tokens.shape[1] == 0:
        raise ValueError(f"image_tokens must hold at least one image and one patch, got {tuple(image_tokens.shape)}")
    if not bool(text_mask.any(dim=1).all()):
        raise ValueError("text_mask must mark at least one real token in every text")


def filip_loss(
    image_tokens: torch.Tensor,
    text_tokens: torch.Tensor,
    text_mask: torch.Tensor,
    logit_scale: torch.Tensor | float,
    *,
    decoupled: bool = False,
    tile_size: int = 32,
    max_logit_scale: float | None = DEFAULT_MAX_LOGIT_SCALE,
    normalize_eps: float = 1e-6,
) -> torch.Tensor:
    """Symmetric fine-grained contrastive loss over the batch of all processes; 0-d fp32.

    image_tokens: [B, P, E] per-patch latents; text_tokens: [B, T, E] per-token latents;
    text_mask: [B, T] bool, True on real tokens. Latents of any float dtype, normalised here.
    logit_scale: exponentiated, clamped to `max_logit_scale`. `decoupled` uses the DCL denominator.
    Under torch.distributed the image and text token latents AND the text mask of every rank are
    gathered; this rank scores only its own rows (gradient convention in `global_batch`).
    """
    check_token_latents(image_tokens, text_tokens, text_mask)
    _check_tile_size(tile_size)
    scale = clamp_logit_scale(logit_scale, max_logit_scale, image_tokens)
    image_latents = to_fp32_features(image_tokens, normalize=True, eps=normalize_eps)
    text_latents = to_fp32_features(text_tokens, normalize=True, eps=normalize_eps)
    text_latents = text_latents.masked_fill(~text_mask[..., None], 0.0)

    rows = locate_rows(image_latents.shape[0], image_latents.device)
    all_image_latents = gather_columns(image_latents, rows)
    all_text_latents = gather_columns(text_latents, rows)
    # gloo gathers no bool tensors; uint8 travels everywhere.
    all_text_mask = gather_columns_no_grad(text_mask.to(torch.uint8), rows).bool()

    logits_per_text = scale * text_to_image_similarity(text_latents, text_mask, all_image_latents,
                                                       tile_size=tile_size)
    logits_per_image = scale * image_to_text_similarity(image_latents, all_text_latents, all_text_mask,
                                                        tile_size=tile_size)
    positive_index = rows.positive_index(image_latents.shape[0], image_latents.device)
    text_to_image = contrastive_row_losses(logits_per_text, positive_index, decoupled=decoupled)
    image_to_text = contrastive_row_losses(logits_per_image, positive_index, decoupled=decoupled)
    share = (text_to_image.sum() + image_to_text.sum()) / (2 * rows.global_batch_size)
    return sum_shares_over_ranks(share)

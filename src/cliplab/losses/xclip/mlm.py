"""Masked language modelling on the text tower (BERT's recipe; x-clip `use_mlm`).

Masking: every token that is not special (start, end, mask, any id the tokenizer calls special)
and not padding is selected with probability `mask_probability`. A selected token is replaced by
the mask id with probability `mask_token_fraction`, by a random ordinary token with probability
`random_token_fraction`, and kept unchanged otherwise. The random replacements are drawn only from
ordinary ids, so masking never creates a start/end/pad token that would move a pooling position.

Loss: cross-entropy between the head's logits at the selected positions and the original tokens,
averaged over this rank's selected positions. MLM has no in-batch negatives, so each rank's mean
is its own; DDP's gradient averaging combines them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class MaskedTokens:
    """The output of `mask_tokens`.

    input_tokens: [B, T] long, what the text tower reads; target_tokens: [B, T] long, the original
    tokens; selected: [B, T] bool, the positions the loss is computed on (masked, randomised or
    kept).
    """

    input_tokens: torch.Tensor
    target_tokens: torch.Tensor
    selected: torch.Tensor


def ordinary_token_ids(vocab_size: int, protected_ids: Iterable[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """[K] long: the ids in [0, vocab_size) that are not protected (special, padding, mask)."""
    is_ordinary = torch.ones(vocab_size, dtype=torch.bool, device=device)
    protected = torch.tensor(sorted(set(int(i) for i in protected_ids)), dtype=torch.long, device=device)
    is_ordinary[protected[(protected >= 0) & (protected < vocab_size)]] = False
    return is_ordinary.nonzero().squeeze(1)


def mask_tokens(
    tokens: torch.Tensor,
    *,
    protected_ids: Iterable[int],
    mask_id: int,
    vocab_size: int,
    mask_probability: float = 0.15,
    mask_token_fraction: float = 0.8,
    random_token_fraction: float = 0.1,
    generator: torch.Generator | None = None,
) -> MaskedTokens:
    """Select and corrupt tokens for MLM.

    tokens: [B, T] long. protected_ids: ids never selected (special and padding ids; the mask id is
    added). Draw order, for reproducibility with a seeded `generator` (on any device; the draws
    move to tokens.device): one uniform [B, T] for selection, one uniform [B, T] for the replacement kind,
    one randint [B, T] for the random replacement tokens.
    """
    if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.long or tokens.dim() != 2:
        raise ValueError(f"tokens must be a 2-D long tensor [batch, length], got "
                         f"{getattr(tokens, 'dtype', type(tokens))} {tuple(getattr(tokens, 'shape', ()))}")
    if not 0.0 <= mask_probability <= 1.0:
        raise ValueError(f"mask_probability must be in [0, 1], got {mask_probability}")
    if mask_token_fraction < 0 or random_token_fraction < 0 or mask_token_fraction + random_token_fraction > 1:
        raise ValueError(
            "mask_token_fraction and random_token_fraction must be >= 0 and sum to <= 1, got "
            f"{mask_token_fraction} and {random_token_fraction}"
        )
    if not 0 <= mask_id < vocab_size:
        raise ValueError(f"mask_id must be in [0, vocab_size={vocab_size}), got {mask_id}")
    protected = set(int(i) for i in protected_ids) | {int(mask_id)}
    replacement_ids = ordinary_token_ids(vocab_size, protected, tokens.device)
    if random_token_fraction > 0 and replacement_ids.numel() == 0:
        raise ValueError("random_token_fraction > 0 needs ordinary (non-special) ids in the vocabulary")

    protected_tensor = torch.tensor(sorted(protected), dtype=torch.long, device=tokens.device)
    can_select = ~torch.isin(tokens, protected_tensor)
    draw_device = generator.device if generator is not None else tokens.device
    selection_draw = torch.rand(tokens.shape, generator=generator, device=draw_device).to(tokens.device)
    kind_draw = torch.rand(tokens.shape, generator=generator, device=draw_device).to(tokens.device)
    random_draw = torch.randint(max(replacement_ids.numel(), 1), tokens.shape, generator=generator,
                                device=draw_device).to(tokens.device)
    selected = can_select & (selection_draw < mask_probability)
    to_mask = selected & (kind_draw < mask_token_fraction)
    to_randomise = selected & (kind_draw >= mask_token_fraction) & (
        kind_draw < mask_token_fraction + random_token_fraction)

    input_tokens = tokens.masked_fill(to_mask, mask_id)
    if replacement_ids.numel() > 0:
        input_tokens = torch.where(to_randomise, replacement_ids[random_draw], input_tokens)
    return MaskedTokens(input_tokens=input_tokens, target_tokens=tokens, selected=selected)


def mlm_loss(selected_logits: torch.Tensor, selected_targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the selected positions.

    selected_logits: [M, V] float, the head's logits at the M selected positions (gathered before
    the head, so it never sees the others); selected_targets: [M] long, the original tokens.
    Returns 0-d fp32; with M = 0 a zero still connected to the logits (every parameter keeps a
    gradient, as DDP requires).
    """
    if selected_logits.dim() != 2 or selected_targets.shape != selected_logits.shape[:1]:
        raise ValueError(
            f"selected_logits must be [M, V] and selected_targets [M], got {tuple(selected_logits.shape)} "
            f"and {tuple(selected_targets.shape)}"
        )
    if selected_logits.shape[0] == 0:
        return selected_logits.float().sum() * 0.0
    return F.cross_entropy(selected_logits.float(), selected_targets)

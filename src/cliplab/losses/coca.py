"""The CoCa loss: a weighted CLIP loss plus a weighted captioning cross-entropy (open_clip's API).

Caption term over a global batch: the mean token cross-entropy over every non-pad label token of
all ranks. Each rank sums its own tokens' cross-entropies and divides by (global non-pad token
count) / N, one integer all-reduce, so the ranks' terms average to the global mean and its
gradient follows the same N-times convention as the contrastive term (exact after DDP's average).
With equal token counts per rank this is open_clip's per-rank mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cliplab.losses.clip import ClipFamilyLoss, clip_loss_from_logits, clip_metrics, fp32_region
from cliplab.losses.common import loss_result
from cliplab.losses.gather import LossWorld


def check_caption_inputs(logits: torch.Tensor, labels: torch.Tensor, pad_id: int) -> None:
    """ValueError unless logits [B, T, V] float and labels [B, T] integer in [0, V) or == pad_id."""
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3 or not logits.is_floating_point():
        raise ValueError(f"logits must be a float tensor [batch, tokens, vocab], got "
                         f"{tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__}")
    if not isinstance(labels, torch.Tensor) or labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"labels must be an int64/int32 tensor [batch, tokens], got "
                         f"{labels.dtype if isinstance(labels, torch.Tensor) else type(labels).__name__}")
    if labels.shape != logits.shape[:2]:
        raise ValueError(f"labels must have shape {tuple(logits.shape[:2])} to match logits [batch, tokens, vocab], "
                         f"got {tuple(labels.shape)}")
    vocab_size = logits.shape[2]
    real_tokens = labels[labels != pad_id]
    if real_tokens.numel() and (real_tokens.min() < 0 or real_tokens.max() >= vocab_size):
        raise ValueError(f"labels must lie in [0, {vocab_size}) (the vocabulary of logits) or equal "
                         f"pad_id={pad_id}, got values in [{int(real_tokens.min())}, {int(real_tokens.max())}]")


def caption_loss_sum(logits: torch.Tensor, labels: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [B, T, V], labels [B, T] -> (0-d sum of token cross-entropies, 0-d count of tokens).

    Tokens whose label is pad_id contribute to neither.
    """
    total = F.cross_entropy(logits.float().permute(0, 2, 1), labels.long(), ignore_index=pad_id, reduction="sum")
    token_count = (labels != pad_id).sum()
    return total, token_count


def caption_loss(logits: torch.Tensor, labels: torch.Tensor, pad_id: int, world: LossWorld) -> torch.Tensor:
    """This rank's share of the global mean caption cross-entropy (see the module docstring).

    0 when no rank has a non-pad token (open_clip would return NaN).
    """
    total, token_count = caption_loss_sum(logits, labels, pad_id)
    global_count = world.sum_no_grad(token_count.float().reshape(1))[0]
    return total / (global_count.clamp(min=1.0) / world.world_size)


class CoCaLoss(ClipFamilyLoss):
    """open_clip's CoCaLoss: (clip_loss_weight * CLIP loss, caption_loss_weight * caption loss).

    CoCaLoss(caption_loss_weight, clip_loss_weight, pad_id=0, then ClipLoss's arguments)
    forward(image_features [B, D], text_features [B, D], logits [B, T, V], labels [B, T] long,
            logit_scale, output_dict=False, *, return_metrics=False)
      -> (contrastive_loss, caption_loss), or {"contrastive_loss", "caption_loss"}; with
         return_metrics, (that, ContrastiveMetrics of the contrastive part).
    """

    def __init__(self, caption_loss_weight: float, clip_loss_weight: float, pad_id: int = 0, *args,
                 **clip_loss_arguments) -> None:
        super().__init__(*args, **clip_loss_arguments)
        for name, weight in (("caption_loss_weight", caption_loss_weight), ("clip_loss_weight", clip_loss_weight)):
            if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
                raise ValueError(f"{name} must be a non-negative number, got {weight!r}")
        if not isinstance(pad_id, int) or isinstance(pad_id, bool):
            raise ValueError(f"pad_id must be an int, got {pad_id!r}")
        self.caption_loss_weight = float(caption_loss_weight)
        self.clip_loss_weight = float(clip_loss_weight)
        self.pad_id = pad_id

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor, logits: torch.Tensor,
                labels: torch.Tensor, logit_scale: torch.Tensor | float, output_dict: bool = False, *,
                return_metrics: bool = False):
        check_caption_inputs(logits, labels, self.pad_id)
        if logits.shape[0] != image_features.shape[0]:
            raise ValueError(f"logits must have one row per image ({image_features.shape[0]}), got {logits.shape[0]}")
        with fp32_region(image_features):
            clip_logits = self.build_logits(image_features, text_features, logit_scale)
            contrastive = self.clip_loss_weight * clip_loss_from_logits(
                clip_logits.logits_per_image, clip_logits.logits_per_text, clip_logits.labels,
                clip_logits.loss_normalizer)
            captioning = self.caption_loss_weight * caption_loss(logits, labels, self.pad_id, self.world)
        return loss_result({"contrastive_loss": contrastive, "caption_loss": captioning}, output_dict,
                           clip_metrics(clip_logits, self.world) if return_metrics else None)

"""The CLIP (InfoNCE) loss, open_clip-compatible, exact across processes.

Loss of a global batch of G pairs with features I, T [G, D] and scale s:

    L = ( CE(s * I @ T.T, arange(G)) + CE(s * T @ I.T, arange(G)) ) / 2

with CE the mean row cross-entropy. With N processes each holding B_r rows (sum_r B_r = G):

| local_loss | gather_with_grad | logits per rank | loss per rank       | feature grad on rank r   |
|------------|------------------|-----------------|---------------------|--------------------------|
| False      | True             | [G, G]          | L                   | N * dL/dx_r (exact)      |
| True       | True             | [B_r, G]        | L_r, mean_r L_r = L | N * dL/dx_r (exact)      |
| False      | False            | [G, G]          | L                   | dL/dx_r                  |
| True       | False            | [B_r, G]        | L_r, mean_r L_r = L | dL_r/dx_r, gathered const|

"Exact" means: DistributedDataParallel averages gradients over ranks, so the parameters receive
(1/N) sum_r N * dL/dtheta_r = dL/dtheta, the gradient of one process on the whole batch, for the
features and for the logit scale alike. Without gather_with_grad and with the global loss, each rank
back-propagates only through its own rows, so the feature-path parameters get dL/dtheta / N after
DDP's average while the logit scale gets the full dL/ds: right direction per tensor, wrong relative
scale. Local loss without gather_with_grad drops every other rank's use of this rank's features as
negatives: a different gradient, kept only for open_clip compatibility.

L_r sums its B_r rows and divides by G / N (the mean local batch), so the ranks' losses average to L
even when local batch sizes differ; with equal sizes that is open_clip's local mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from cliplab.losses.common import (
    DEFAULT_MAX_LOGIT_SCALE,
    DEFAULT_NORMALIZE_EPS,
    ContrastiveMetrics,
    check_feature_pair,
    clamp_logit_scale,
    loss_result,
    to_fp32_features,
    validate_max_logit_scale,
)
from cliplab.losses.gather import LossWorld, gather_pair
from cliplab.distributed.collectives import row_offsets


def _check_flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class ClipLossConfig:
    """Options shared by ClipLoss, CoCaLoss and DistillClipLoss (open_clip's, then cliplab's)."""

    local_loss: bool = False
    gather_with_grad: bool = False
    cache_labels: bool = False
    rank: int = 0
    world_size: int = 1
    use_horovod: bool = False
    max_logit_scale: float | None = DEFAULT_MAX_LOGIT_SCALE
    normalize: bool = False
    normalize_eps: float = DEFAULT_NORMALIZE_EPS

    def __post_init__(self) -> None:
        for name in ("local_loss", "gather_with_grad", "cache_labels", "use_horovod", "normalize"):
            _check_flag(name, getattr(self, name))
        validate_max_logit_scale(self.max_logit_scale)
        if not (isinstance(self.normalize_eps, (int, float)) and self.normalize_eps > 0):
            raise ValueError(f"normalize_eps must be a positive number, got {self.normalize_eps!r}")
        self.world  # validates rank, world_size and the Horovod import

    @property
    def world(self) -> LossWorld:
        return LossWorld(rank=self.rank, world_size=self.world_size, use_horovod=self.use_horovod)


@dataclass(frozen=True)
class ClipLogits:
    """The logits one rank computes, and how to turn its row losses into its share of L.

    logits_per_image / logits_per_text: [R, G] float32, R = G (global rows) or B_r (local rows).
    labels: [R] int64, the column of each row's positive.
    loss_normalizer: divide a sum over the R rows by this; the ranks' results average to the
    global mean (G when rows are global, G / N when local).
    logit_scale: 0-d float32, the clamped scale used.
    batch_sizes: every rank's local batch size, in rank order.
    """

    logits_per_image: torch.Tensor
    logits_per_text: torch.Tensor
    labels: torch.Tensor
    loss_normalizer: float
    logit_scale: torch.Tensor
    local_batch_size: int
    global_batch_size: int
    rows_are_global: bool
    batch_sizes: list[int]


def clip_loss_from_logits(logits_per_image: torch.Tensor, logits_per_text: torch.Tensor,
                          labels: torch.Tensor, loss_normalizer: float) -> torch.Tensor:
    """[R, C] x2 float, labels [R] long -> 0-d: (sum of both row cross-entropies) / (2 * normalizer)."""
    image_to_text = F.cross_entropy(logits_per_image, labels, reduction="sum")
    text_to_image = F.cross_entropy(logits_per_text, labels, reduction="sum")
    return (image_to_text + text_to_image) / (2.0 * loss_normalizer)


class ClipLogitsBuilder:
    """Builds ClipLogits for one rank, caching label vectors when asked (open_clip's cache_labels)."""

    def __init__(self, config: ClipLossConfig) -> None:
        self.config = config
        self.world = config.world
        self._labels: dict[tuple[torch.device, int, int], torch.Tensor] = {}

    def _labels_for(self, device: torch.device, rows: int, first_label: int) -> torch.Tensor:
        key = (device, rows, first_label)
        labels = self._labels.get(key)
        if labels is None:
            labels = torch.arange(first_label, first_label + rows, device=device, dtype=torch.long)
            if self.config.cache_labels:
                self._labels[key] = labels
        return labels

    def __call__(self, image_features: torch.Tensor, text_features: torch.Tensor,
                 logit_scale: torch.Tensor | float, *, image_name: str = "image_features",
                 text_name: str = "text_features", batch_sizes: list[int] | None = None) -> ClipLogits:
        """image_features, text_features: [B_r, D] any float dtype; computation in float32."""
        config = self.config
        check_feature_pair(image_features, text_features, image_name, text_name)
        self.world.check_matches_process_group()
        image_features = to_fp32_features(image_features, config.normalize, config.normalize_eps)
        text_features = to_fp32_features(text_features, config.normalize, config.normalize_eps)
        scale = clamp_logit_scale(logit_scale, config.max_logit_scale, image_features)
        local_rows = image_features.shape[0]
        if batch_sizes is None:
            batch_sizes = self.world.batch_sizes(local_rows, image_features.device)
        global_rows = sum(batch_sizes)
        all_image, all_text = gather_pair(self.world, image_features, text_features, config.local_loss,
                                          config.gather_with_grad, batch_sizes)
        if self.world.is_distributed and config.local_loss:
            first_label = row_offsets(batch_sizes)[self.world.rank]
            logits_per_image = scale * image_features @ all_text.T
            logits_per_text = scale * text_features @ all_image.T
            labels = self._labels_for(image_features.device, local_rows, first_label)
            normalizer = global_rows / self.world.world_size
        else:
            logits_per_image = scale * all_image @ all_text.T
            logits_per_text = logits_per_image.T
            labels = self._labels_for(image_features.device, global_rows, 0)
            normalizer = float(global_rows)
        return ClipLogits(logits_per_image, logits_per_text, labels, normalizer, scale.detach(),
                          local_rows, global_rows,
                          rows_are_global=not (self.world.is_distributed and config.local_loss),
                          batch_sizes=batch_sizes)


def clip_metrics(logits: ClipLogits, world: LossWorld) -> ContrastiveMetrics:
    """Top-1 accuracy over the global batch from logits already built.

    With global rows the accuracy is read off the [G, G] logits. With local rows each rank counts
    its rows' hits against all G columns and one 2-element all-reduce sums the counts, so the
    figure is the same global accuracy either way (every rank must ask for metrics together).
    """
    with torch.no_grad():
        image_hits = (logits.logits_per_image.argmax(dim=-1) == logits.labels).sum()
        text_hits = (logits.logits_per_text.argmax(dim=-1) == logits.labels).sum()
        hits = torch.stack([image_hits, text_hits]).float()
        if not logits.rows_are_global:
            hits = world.sum_no_grad(hits)
        accuracies = hits / logits.global_batch_size
    return ContrastiveMetrics(i2t_accuracy=accuracies[0], t2i_accuracy=accuracies[1],
                              logit_scale=logits.logit_scale, local_batch_size=logits.local_batch_size,
                              global_batch_size=logits.global_batch_size)


def fp32_region(reference: torch.Tensor):
    """Autocast switched off, so the logits and the loss stay float32 inside a mixed-precision step."""
    return torch.autocast(device_type=reference.device.type, enabled=False)


class ClipFamilyLoss(nn.Module):
    """open_clip's ClipLoss constructor, shared by ClipLoss, DistillClipLoss, CoCaLoss and TiledClipLoss.

    The arguments (open_clip's positional ones, then cliplab's keyword-only max_logit_scale,
    normalize, normalize_eps) become `config` (a validated ClipLossConfig), `world` (this rank's
    place) and `build_logits` (a ClipLogitsBuilder). Each subclass adds its own forward only.
    """

    def __init__(
        self,
        local_loss: bool = False,
        gather_with_grad: bool = False,
        cache_labels: bool = False,
        rank: int = 0,
        world_size: int = 1,
        use_horovod: bool = False,
        *,
        max_logit_scale: float | None = DEFAULT_MAX_LOGIT_SCALE,
        normalize: bool = False,
        normalize_eps: float = DEFAULT_NORMALIZE_EPS,
    ) -> None:
        super().__init__()
        self.config = ClipLossConfig(
            local_loss=local_loss, gather_with_grad=gather_with_grad, cache_labels=cache_labels,
            rank=rank, world_size=world_size, use_horovod=use_horovod,
            max_logit_scale=max_logit_scale, normalize=normalize, normalize_eps=normalize_eps)
        self.build_logits = ClipLogitsBuilder(self.config)
        self.world = self.build_logits.world


class ClipLoss(ClipFamilyLoss):
    """open_clip's ClipLoss with exact distributed semantics (see the module docstring).

    ClipLoss(local_loss=False, gather_with_grad=False, cache_labels=False, rank=0, world_size=1,
             use_horovod=False, *, max_logit_scale=100, normalize=False, normalize_eps=1e-6)
    forward(image_features [B, D], text_features [B, D], logit_scale (exp'd, 0-d or float),
            output_dict=False, *, return_metrics=False)
      -> loss (0-d float32), or {"contrastive_loss": loss}; with return_metrics, a pair
         (that, ContrastiveMetrics).

    Gradient convention: with gather_with_grad=True each rank's features receive N times the
    one-process gradient of the global loss and DDP's 1/N average makes it exact; this holds for
    local_loss True and False. Use local_loss=True, gather_with_grad=True: exact and B x G logits.
    """

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor | float, output_dict: bool = False, *,
                return_metrics: bool = False):
        with fp32_region(image_features):
            logits = self.build_logits(image_features, text_features, logit_scale)
            loss = clip_loss_from_logits(logits.logits_per_image, logits.logits_per_text,
                                         logits.labels, logits.loss_normalizer)
        return loss_result({"contrastive_loss": loss}, output_dict,
                           clip_metrics(logits, self.world) if return_metrics else None)

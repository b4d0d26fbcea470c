"""One optimiser step's forward/backward over k micro-batches, with negatives spanning all of them.

With k = 1 this is a plain forward, loss, backward. With k > 1 it is open_clip's `accum_freq`
scheme made exact:
  1. pass 1, no graph: run every micro-batch i and cache its batched outputs (features; CoCa
     logits/labels), remembering the RNG state before each forward;
  2. pass 2, per micro-batch i: restore RNG state i (so dropout / patch dropout draw the same masks
     as in pass 1, as GradCache does and open_clip does not), recompute i with a graph, splice its
     outputs into the cached ones, compute the loss over the whole accumulated batch and backward.
Summing the k backward passes gives the gradient of the loss of the full k*b batch: every
micro-batch's share flows through its own recomputed features, and the other rows are constants.
The scalar outputs (logit_scale, logit_bias) keep their graph only in the last recompute, so their
gradient is counted once, not k times (open_clip counts it k times); the last one because under DDP
it is the backward that all-reduces, and every parameter must receive its gradient there.

Under DDP only the last backward all-reduces (`no_sync` for the others). BatchNorm layers see
micro-batch statistics, so with them accumulation is not identical to a large batch.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Mapping, Sequence

import torch

SCALAR_OUTPUTS = ("logit_scale", "logit_bias")

ModelOutput = Mapping[str, Any]


@dataclass
class LossOutput:
    """total: the 0-d fp32 loss to backward; terms: named parts (e.g. 'contrastive_loss'),
    detached; metrics: the contrastive loss's ContrastiveMetrics (or None)."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]
    metrics: Any = None


@dataclass
class MicroBatch:
    images: torch.Tensor  # [b, 3, H, W] float
    tokens: torch.Tensor  # [b, T] long


def capture_rng(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: Mapping[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _is_batched(value: Any, rows: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == rows


def splice_outputs(cached: Sequence[ModelOutput], fresh: ModelOutput, index: int,
                   keep_scalar_graph: bool) -> dict[str, Any]:
    """Concatenate the micro-batches' batched outputs along dim 0, with micro-batch `index` taken
    from `fresh` (which carries the graph). Scalars come from `fresh`, detached unless
    `keep_scalar_graph`."""
    rows = [micro["image_features"].shape[0] for micro in cached]
    merged: dict[str, Any] = {}
    for key, value in fresh.items():
        if key in SCALAR_OUTPUTS:
            merged[key] = value if keep_scalar_graph else value.detach()
        elif _is_batched(value, rows[index]):
            parts = [value if i == index else micro[key] for i, micro in enumerate(cached)]
            merged[key] = torch.cat(parts, dim=0)
        else:
            merged[key] = value
    return merged


def _detached(output: ModelOutput) -> dict[str, Any]:
    return {key: value.detach() if isinstance(value, torch.Tensor) else value for key, value in output.items()}


def forward_backward(
    micro_batches: Sequence[MicroBatch],
    *,
    forward: Callable[[torch.Tensor, torch.Tensor], ModelOutput],
    compute_loss: Callable[[ModelOutput], LossOutput],
    backward: Callable[[torch.Tensor], None],
    no_sync: Callable[[], ContextManager] = contextlib.nullcontext,
    device: torch.device = torch.device("cpu"),
) -> LossOutput:
    """Accumulate the gradient of the loss over all `micro_batches` into the parameters' .grad.

    forward(images, tokens) runs the (possibly DDP-wrapped) model under the caller's autocast;
    compute_loss maps a model output dict to a LossOutput; backward(total) calls .backward (through
    a GradScaler if any); no_sync() is DDP's no_sync (skips the gradient all-reduce).
    Returns the loss of the whole accumulated batch (detached).
    """
    if len(micro_batches) == 1:
        micro = micro_batches[0]
        result = compute_loss(forward(micro.images, micro.tokens))
        backward(result.total)
        return LossOutput(result.total.detach(), result.terms, result.metrics)

    rng_states, cached = [], []
    with torch.no_grad():
        for micro in micro_batches:
            rng_states.append(capture_rng(device))
            cached.append(_detached(forward(micro.images, micro.tokens)))
    rng_after_first_pass = capture_rng(device)

    result = None
    last = len(micro_batches) - 1
    for index, micro in enumerate(micro_batches):
        restore_rng(rng_states[index], device)
        sync_context = no_sync() if index < last else contextlib.nullcontext()
        with sync_context:
            fresh = forward(micro.images, micro.tokens)
            result = compute_loss(splice_outputs(cached, fresh, index, keep_scalar_graph=index == last))
            backward(result.total)
    restore_rng(rng_after_first_pass, device)
    return LossOutput(result.total.detach(), result.terms, result.metrics)

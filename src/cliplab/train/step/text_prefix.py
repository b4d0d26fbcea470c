"""The token columns a training step feeds: the one prefix its whole global batch needs.

A causal text tower's pooled features read no column after a row's end-of-text, so the columns
after the batch's longest text are wasted work (most captions are far shorter than the context).
Each rank could cut its own micro-batch to its own longest text, but then ranks and micro-batches
run shapes that one process with the global batch does not, the sums inside the blocks round
differently, and an N-process run stops equalling the 1-process run. So the step cuts every
micro-batch on every rank to the longest prefix any of them needs (`CLIP.token_columns_read`, the
largest over the micro-batches and, in one all_reduce, over the ranks): the shapes of the single
process, whatever the world size and accumulation.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from cliplab.distributed.agreement import max_over_ranks
from cliplab.train.step.accumulation import MicroBatch


def step_token_columns(micro_batches: Sequence[MicroBatch], model: nn.Module) -> int:
    """The leading token columns every row of the step's global batch needs (a collective: every
    rank calls it once per step). model: the unwrapped CLIP model (`token_columns_read`)."""
    return max_over_ranks(max(model.token_columns_read(micro.tokens) for micro in micro_batches))


def cut_to_step_prefix(micro_batches: Sequence[MicroBatch], model: nn.Module) -> list[MicroBatch]:
    """The micro-batches with their tokens cut to `step_token_columns` (a collective)."""
    columns = step_token_columns(micro_batches, model)
    return [MicroBatch(micro.images, micro.tokens[:, :columns]) for micro in micro_batches]

"""What the dense losses' multi-process tests share: the batch layouts per world size, the grid of
open_clip's two distribution options, each rank's rows, and a worker's loop over both."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch

# world size -> per-rank batch sizes of each layout (equal and unequal)
LAYOUTS = {2: [[2, 2], [3, 1]], 3: [[2, 2, 2], [1, 3, 2]], 4: [[2, 2, 2, 2], [3, 1, 2, 1]]}
OPTION_GRID = list(itertools.product([False, True], [False, True]))  # (local_loss, gather_with_grad)


def rank_rows(batch_sizes: list[int], rank: int) -> slice:
    start = sum(batch_sizes[:rank])
    return slice(start, start + batch_sizes[rank])


def results_per_layout_and_option(rank: int, layouts: list[list[int]],
                                  global_batch: Callable[[int], tuple[torch.Tensor, ...]],
                                  make_loss: Callable[[bool, bool], torch.nn.Module],
                                  run: Callable[..., dict]) -> list[dict]:
    """For each layout (its cases first) and each (local_loss, gather_with_grad) of OPTION_GRID:
    `run(make_loss(local_loss, gather_with_grad), *rank's rows of global_batch(the layout's rows))`,
    with the two options added to its dict."""
    results = []
    for batch_sizes in layouts:
        rows = rank_rows(batch_sizes, rank)
        local = [tensor[rows] for tensor in global_batch(sum(batch_sizes))]
        for local_loss, gather_with_grad in OPTION_GRID:
            results.append(run(make_loss(local_loss, gather_with_grad), *local)
                           | {"local_loss": local_loss, "gather_with_grad": gather_with_grad})
    return results

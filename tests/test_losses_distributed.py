"""Every dense loss on 2, 3 and 4 real gloo processes against one process on the whole batch.

One group of processes per world size runs the workers of all four loss test modules (process
start-up dominates the cost); the assertions live next to each loss's other tests.
"""
import pytest

from cliplab.distributed.launch import run_on_workers
from loss_helpers import LAYOUTS
from test_losses_clip import _clip_worker, check_clip_results
from test_losses_coca import _coca_worker, check_coca_results
from test_losses_distill import _distill_worker, check_distill_results
from test_losses_siglip import _siglip_worker, check_siglip_results

WORKERS = {"clip": _clip_worker, "siglip": _siglip_worker, "coca": _coca_worker, "distill": _distill_worker}
CHECKS = {"clip": check_clip_results, "siglip": check_siglip_results, "coca": check_coca_results,
          "distill": check_distill_results}


def _all_losses_worker(rank, world_size, layouts):
    return {name: worker(rank, world_size, layouts) for name, worker in WORKERS.items()}


@pytest.mark.parametrize("world_size", [2, 3, pytest.param(4, marks=pytest.mark.slow)])  # 3: odd rings; 4 under -m slow
def test_every_loss_and_option_matches_one_process(world_size):
    per_rank = run_on_workers(_all_losses_worker, world_size, LAYOUTS[world_size], timeout_s=300)
    for name, check in CHECKS.items():
        check(world_size, [results[name] for results in per_rank])

"""Process-wide torch settings of a run: intra-op threads, deterministic algorithms, seeds."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from cliplab.train.config import LoopConfig
from cliplab.train.parallel.processes import DistributedContext


def configure_torch(loop: LoopConfig, context: DistributedContext) -> None:
    """Intra-op threads (default: the cores divided among this machine's ranks) and determinism."""
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(context.world_size)))
    threads = loop.threads or max(1, (os.cpu_count() or 1) // max(local_world, 1))
    torch.set_num_threads(threads)
    if loop.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if context.device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.benchmark = False


def seed_everything(seed: int) -> None:
    """Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)

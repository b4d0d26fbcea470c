"""Process-wide torch settings of a run: intra-op threads, deterministic algorithms, seeds, and
where torch.compile keeps what it compiled."""

from __future__ import annotations

import os
import random

from pathlib import Path

import numpy as np
import torch

from cliplab.data.fashion_mnist_files import cliplab_cache_root
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


COMPILE_CACHE_ENV_VAR = "TORCHINDUCTOR_CACHE_DIR"


def use_compile_cache() -> Path:
    """Point torch.compile's on-disk caches (inductor's compiled graphs and kernels, AOTAutograd's
    joint graphs) at one directory shared by every run, rank and resume on this machine, and
    return it: $TORCHINDUCTOR_CACHE_DIR when set, else $CLIPLAB_CACHE/torchinductor
    (~/.cache/cliplab/torchinductor). A second start of a compiled configuration then loads its
    graphs instead of compiling them (BENCHMARKS.md, `compile_cache`). torch reads the variable
    when it first compiles, so this runs before `CLIP.compile_blocks`."""
    directory = os.environ.get(COMPILE_CACHE_ENV_VAR)
    if directory is None:
        directory = str(cliplab_cache_root() / "torchinductor")
        os.environ[COMPILE_CACHE_ENV_VAR] = directory
    return Path(directory)

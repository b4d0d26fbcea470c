"""Deterministic seeds derived from (seed, epoch, sample index, ...) and per-sample seeding of the global RNGs.

Everything random in the data pipeline (caption choice, replacement of bad samples, augmentation)
is a pure function of a few integers, so the same sample looks the same whichever DataLoader worker,
rank count or resume point produced it.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

_MASK64 = (1 << 64) - 1


def _splitmix64(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def mix_seed(*parts: int) -> int:
    """A 63-bit seed that depends on every integer in `parts` and their order (splitmix64 chain)."""
    state = 0
    for part in parts:
        state = _splitmix64(state ^ (int(part) & _MASK64))
    return state >> 1


@contextmanager
def preserved_global_rngs() -> Iterator[None]:
    """Restore torch's CPU generator, `random` and numpy's global RNG to their state on entry.

    Wraps a whole batch, inside which `seed_global_rngs` reseeds per sample: saving numpy's state
    costs about as much as a small image's transform, so it is paid once per batch. This keeps the
    caller's RNG streams (the training loop's, when workers=0) untouched.
    """
    torch_state = torch.random.default_generator.get_state()
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    try:
        yield
    finally:
        torch.random.default_generator.set_state(torch_state)
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def seed_global_rngs(seed: int) -> None:
    """Seed the generators image augmentations draw from, so a sample's augmentation depends on
    `seed` only, not on the worker or what it ran before. Only the CPU generator is touched:
    seeding CUDA here would disturb the model's RNG."""
    torch.random.default_generator.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)

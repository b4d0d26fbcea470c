import random

import numpy as np
import torch

from cliplab.data.seeding import mix_seed, preserved_global_rngs, seed_global_rngs


def test_mix_seed_is_deterministic_order_sensitive_and_63_bit():
    assert mix_seed(1, 2, 3) == mix_seed(1, 2, 3)
    assert mix_seed(1, 2, 3) != mix_seed(3, 2, 1)
    assert mix_seed(0, 1) != mix_seed(1, 0)
    assert len({mix_seed(0, epoch, index) for epoch in range(10) for index in range(100)}) == 1000
    assert all(0 <= mix_seed(-5, index) < 2**63 for index in range(100))


def test_seeding_reproduces_draws_and_preserving_restores_state():
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    with preserved_global_rngs():
        seed_global_rngs(42)
        first = (torch.rand(2), random.random(), np.random.rand())
        seed_global_rngs(42)
        second = (torch.rand(2), random.random(), np.random.rand())
    assert torch.equal(first[0], second[0]) and first[1:] == second[1:]
    after = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(after[0], expected[0]) and after[1:] == expected[1:]

"""The linear probe equals CLIP_benchmark's `linear_probe.evaluate` on the same features, and its
weight-decay search visits the grid as CLIP_benchmark's does."""

import pytest
import torch
import torch.nn.functional as F

from clip_benchmark_oracle import linear_probe as clip_benchmark_probe
from cliplab.errors import UserError
from cliplab.eval.linear_probe import (COARSE_WEIGHT_DECAYS, WEIGHT_DECAYS, Features, LinearProbeConfig, linear_probe,
                                       search_weight_decay)

# CLIP_benchmark's loaders ask for pinned memory without a GPU; scikit-learn warns on classes never predicted.
pytestmark = pytest.mark.filterwarnings("ignore:'pin_memory':UserWarning", "ignore::UserWarning:sklearn")



def _features(count: int, seed: int, num_classes: int = 6, dim: int = 8) -> Features:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % num_classes
    centres = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(99))
    rows = centres[labels] + 0.9 * torch.randn(count, dim, generator=generator)
    return Features(F.normalize(rows, dim=-1), labels)


@pytest.mark.parametrize("with_validation, fewshot_k", [(False, -1), (True, -1), (False, 3)])
def test_equal_to_clip_benchmarks_linear_probe(tmp_path, with_validation, fewshot_k):
    train, validation, test = _features(36, 1), _features(18, 2), _features(24, 3)
    config = LinearProbeConfig(epochs=2, lr=0.1, batch_size=16, fewshot_k=fewshot_k, seed=3)
    ours = linear_probe(train, test, validation if with_validation else None, config=config)
    theirs = clip_benchmark_probe(tmp_path, train, test, validation if with_validation else None, epochs=2, lr=0.1,
                                  batch_size=16, seed=3, fewshot_k=fewshot_k)
    assert set(ours) == set(theirs)
    for key, value in ours.items():
        assert value == pytest.approx(theirs[key], rel=1e-9), key  # same steps on the same CPU: same numbers


def test_search_visits_clip_benchmarks_sequence():
    visited = []

    def accuracy(decay):  # peaks at index 37 of the grid
        visited.append(WEIGHT_DECAYS.index(decay))
        return 1.0 - abs(WEIGHT_DECAYS.index(decay) - 37) / 100

    assert search_weight_decay(accuracy) == WEIGHT_DECAYS[37]
    # the coarse grid peaks at 32; span 8 moves it to 40, span 4 to 36, span 2 keeps 36 (38 ties, not
    # better), span 1 moves it to 37; each index is trained once
    assert visited == [0, 16, 32, 48, 64, 80, 96, 24, 40, 36, 44, 34, 38, 35, 37]
    assert [WEIGHT_DECAYS.index(decay) for decay in COARSE_WEIGHT_DECAYS] == [0, 16, 32, 48, 64, 80, 96]
    assert search_weight_decay(lambda decay: 0.0) == WEIGHT_DECAYS[0]  # nothing better than 0: index 0


def test_few_shot_needs_k_per_class_and_leaves_the_rng_alone():
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    linear_probe(_features(30, 1), _features(12, 2), config=LinearProbeConfig(epochs=1, batch_size=8))
    assert torch.equal(torch.rand(3), expected)
    with pytest.raises(UserError, match=r"--fewshot-k 6: class \d has only 5 training images"):
        linear_probe(_features(30, 1), _features(12, 2), config=LinearProbeConfig(fewshot_k=6))

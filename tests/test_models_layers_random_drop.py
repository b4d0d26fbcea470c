"""RandomDrop: the identity in eval mode and at probability 0, its `drop` otherwise; the probability
checked for every kind (DropPath, PatchDropout)."""

import pytest
import torch

from cliplab.models.layers.drop_path import DropPath
from cliplab.models.layers.patch_dropout import PatchDropout
from cliplab.models.layers.random_drop import RandomDrop


class Negate(RandomDrop):
    def drop(self, x: torch.Tensor) -> torch.Tensor:
        return -x


def test_drop_runs_only_while_training_with_a_probability_above_zero():
    x = torch.ones(2, 3)
    assert Negate(0.5).eval()(x) is x
    assert Negate(0.0).train()(x) is x
    assert torch.equal(Negate(0.5).train()(x), -x)


@pytest.mark.parametrize("probability", [-0.1, 1.0, 1.5])
@pytest.mark.parametrize("kind", [Negate, DropPath, PatchDropout])
def test_a_probability_outside_zero_one_is_refused_by_every_kind(kind, probability):
    with pytest.raises(ValueError, match=r"probability must be in \[0, 1\), got"):
        kind(probability)


def test_the_repr_names_the_probability():
    assert repr(DropPath(0.25)) == "DropPath(probability=0.25)"
    assert repr(PatchDropout(0.5)) == "PatchDropout(probability=0.5)"

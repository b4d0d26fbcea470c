"""Every in-batch-negative term, across 2 and 3 real processes, equals the single-process loss on
the whole batch; each rank's input gradient is N times the single-process gradient of its rows."""

import pytest
import torch

from cliplab.distributed.launch import run_on_workers
from cliplab.losses.xclip.dcl import global_contrastive_loss
from cliplab.losses.xclip.filip import filip_loss
from cliplab.losses.xclip.multiview import multiview_contrastive_loss
from cliplab.losses.xclip.sim_reg import similarity_regularization_loss
from cliplab.losses.xclip.simclr import simclr_loss

GLOBAL_BATCH = 5
SPLITS = {2: [3, 2], 3: [2, 2, 1]}  # uneven on purpose


def _global_inputs():
    generator = torch.Generator().manual_seed(1234)
    pooled = {name: torch.randn(GLOBAL_BATCH, 4, generator=generator)
              for name in ("image", "text", "image_extra", "text_extra", "image_aug", "text_aug")}
    tokens = {
        "image_tokens": torch.randn(GLOBAL_BATCH, 3, 4, generator=generator),
        "text_tokens": torch.randn(GLOBAL_BATCH, 5, 4, generator=generator),
    }
    lengths = torch.tensor([2, 5, 1, 3, 4])
    text_mask = torch.arange(5)[None, :] < lengths[:, None]
    return {**pooled, **tokens}, text_mask


def _terms(inputs, text_mask):
    """name -> (loss function of the leaf dict, names of the leaves it uses)."""
    return {
        "dcl": (lambda x: global_contrastive_loss(x["image"], x["text"], 3.0, decoupled=True,
                                                  image_features_i2t=x["image_extra"],
                                                  text_features_i2t=x["text_extra"]),
                ("image", "text", "image_extra", "text_extra")),
        "infonce": (lambda x: global_contrastive_loss(x["image"], x["text"], 3.0, decoupled=False),
                    ("image", "text")),
        "filip": (lambda x: filip_loss(x["image_tokens"], x["text_tokens"], text_mask, 4.0, decoupled=True,
                                       tile_size=2),
                  ("image_tokens", "text_tokens")),
        "simclr": (lambda x: simclr_loss(x["image"], x["image_aug"], temperature=0.3), ("image", "image_aug")),
        "multiview": (lambda x: multiview_contrastive_loss([x["image"], x["image_aug"]], [x["text"], x["text_aug"]],
                                                           2.0, decoupled=True),
                      ("image", "text", "image_aug", "text_aug")),
        "sim_reg": (lambda x: similarity_regularization_loss(x["image"], x["text"]), ("image", "text")),
    }


def _evaluate(inputs, text_mask):
    results = {}
    for name, (loss_fn, leaf_names) in _terms(inputs, text_mask).items():
        leaves = {key: value.clone().requires_grad_(True) for key, value in inputs.items()}
        loss = loss_fn(leaves)
        gradients = torch.autograd.grad(loss, [leaves[key] for key in leaf_names])
        results[name] = (loss.detach(), dict(zip(leaf_names, gradients)))
    return results


def _rank_slice(rank, world_size):
    sizes = SPLITS[world_size]
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


def _evaluate_on_rank(rank, world_size):
    inputs, text_mask = _global_inputs()
    rows = _rank_slice(rank, world_size)
    return _evaluate({key: value[rows] for key, value in inputs.items()}, text_mask[rows])


@pytest.mark.parametrize("world_size", [2, 3])
def test_every_term_equals_the_single_process_global_loss(world_size):
    inputs, text_mask = _global_inputs()
    single = _evaluate(inputs, text_mask)
    per_rank = run_on_workers(_evaluate_on_rank, world_size, timeout_s=120)
    for rank, results in enumerate(per_rank):
        rows = _rank_slice(rank, world_size)
        for name, (loss, gradients) in results.items():
            expected_loss, expected_gradients = single[name]
            torch.testing.assert_close(loss, expected_loss, rtol=1e-5, atol=0, msg=f"{name} rank {rank}")
            for leaf, gradient in gradients.items():
                torch.testing.assert_close(gradient, world_size * expected_gradients[leaf][rows], rtol=1e-5,
                                           atol=1e-7, msg=f"{name} d/d{leaf} rank {rank}")

import pytest
import torch
import torch.nn.functional as F

from cliplab.distributed.launch import run_on_workers
from cliplab.distributed.ring import Ring
from cliplab.losses.siglip import SigLipLoss
from cliplab.losses.tiled_siglip import SigmoidTilePlan, TiledSigLipLoss, augmented_width, tiled_siglip_loss
from test_losses_tiled_clip import (LargestTensor, assert_all_close, assert_half_features_match_their_fp32_upcast,
                                   loss_and_grads, rank_slice, ring_global_batch)

BIG_BUDGET = 2**30


def dense_siglip_reference(image, text, scale, bias, divisor=None):
    """open_clip's sigmoid loss written out: -sum log sigmoid(y * (s I T^T + b)) / B, y = 2 eye - 1."""
    logits = scale * image @ text.T + bias
    signs = 2 * torch.eye(image.shape[0], text.shape[0]) - 1
    return -F.logsigmoid(signs * logits).sum() / (divisor or image.shape[0])


def leaves(batch, dim, seed, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, dim, generator=generator).to(dtype).requires_grad_(True)
    text = torch.randn(batch, dim, generator=generator).to(dtype).requires_grad_(True)
    return image, text, torch.tensor(3.0, requires_grad=True), torch.tensor(-2.0, requires_grad=True)


@pytest.mark.parametrize("batch,tile_size", [(1, 4), (5, 8), (12, 4), (12, 5), (13, 1), (7, 3)])
@pytest.mark.parametrize("keep_budget", [0, BIG_BUDGET])
def test_value_and_gradients_equal_the_dense_loss(batch, tile_size, keep_budget):
    image, text, scale, bias = leaves(batch, 6, seed=batch * 17 + tile_size)
    loss = TiledSigLipLoss(tile_size=tile_size, keep_tiles_max_bytes=keep_budget)
    tiled = loss_and_grads(loss, image, text, scale, bias)
    double = [t.detach().double().requires_grad_(True) for t in (image, text, scale, bias)]
    assert_all_close(tiled, loss_and_grads(dense_siglip_reference, *double))
    assert_all_close(tiled, loss_and_grads(SigLipLoss(), image, text, scale, bias))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_give_the_dense_loss_of_their_fp32_upcast(dtype):
    assert_half_features_match_their_fp32_upcast(TiledSigLipLoss(tile_size=4), dense_siglip_reference,
                                                 leaves(10, 8, seed=6, dtype=dtype))


@pytest.mark.parametrize("keep_tiles", [False, True])
def test_gradcheck_in_float64(keep_tiles):
    generator = torch.Generator().manual_seed(7)
    inputs = (torch.randn(5, 3, dtype=torch.float64, generator=generator, requires_grad=True),
              torch.randn(5, 3, dtype=torch.float64, generator=generator, requires_grad=True),
              torch.tensor(2.5, dtype=torch.float64, requires_grad=True),
              torch.tensor(-1.5, dtype=torch.float64, requires_grad=True))
    plan = SigmoidTilePlan(ring=Ring(), batch_sizes=(5,), tile_size=2, keep_tiles=keep_tiles, want_metrics=False)
    # A repeated backward recomputes the tiles the first one consumed: equal up to rounding.
    assert torch.autograd.gradcheck(lambda i, t, s, b: tiled_siglip_loss(i, t, s, b, plan)[0], inputs,
                                    nondet_tol=1e-12)


def test_metrics_match_siglip_loss():
    generator = torch.Generator().manual_seed(8)
    image = torch.randn(11, 6, generator=generator)
    text = image + 0.9 * torch.randn(11, 6, generator=generator)
    (_, tiled), (_, dense) = (loss(image, text, 5.0, -1.0, return_metrics=True)
                              for loss in (TiledSigLipLoss(tile_size=4), SigLipLoss()))
    assert 0 < tiled.i2t_accuracy < 1 and 0 < tiled.t2i_accuracy < 1
    assert tiled.as_floats() == dense.as_floats()


def test_scale_clamp_normalize_and_output_dict_follow_siglip_loss():
    image, text, _, bias = leaves(6, 4, seed=9)
    scale = torch.tensor(150.0, requires_grad=True)
    options = dict(normalize=True, max_logit_scale=50.0)
    tiled = TiledSigLipLoss(tile_size=4, **options)(image, text, scale, bias, output_dict=True)
    assert set(tiled) == {"contrastive_loss"}
    tiled = tiled["contrastive_loss"]
    dense = SigLipLoss(**options)(image, text, scale, bias)
    assert_all_close([tiled.detach(), *torch.autograd.grad(tiled, [image, text, scale, bias])],
                     [dense.detach(), *torch.autograd.grad(dense, [image, text, scale, bias])])


def test_bad_arguments_raise_value_errors_naming_them():
    with pytest.raises(ValueError, match="tile_size"):
        TiledSigLipLoss(tile_size=-3)
    with pytest.raises(ValueError, match="dist_impl"):
        TiledSigLipLoss(dist_impl="teleport")
    with pytest.raises(ValueError, match="logit_bias"):
        TiledSigLipLoss()(torch.randn(3, 4), torch.randn(3, 4), 1.0, float("inf"))


def test_saved_state_is_linear_in_the_batch_above_the_keep_budget():
    batch, dim, tile = 64, 4, 8
    image, text, scale, bias = leaves(batch, dim, seed=10)
    with LargestTensor() as tracker:
        loss = TiledSigLipLoss(tile_size=tile, keep_tiles_max_bytes=0)(image, text, scale, bias)
        assert all(saved.numel() <= batch * dim for saved in loss.grad_fn.saved_tensors)
        assert loss.grad_fn.kept is None
        loss.backward()
    # No op, forward or backward, returns anything larger than the features (with the bias as an
    # extra feature column, padded: [B, augmented_width(D)]) or one tile.
    assert tracker.largest <= max(batch * augmented_width(dim), tile * tile) < batch * batch
    kept = TiledSigLipLoss(tile_size=tile, keep_tiles_max_bytes=batch * batch * 4)(image, text, scale, bias)
    assert sum(tile.numel() for tile in kept.grad_fn.kept.values()) == batch * batch


def _distributed_checks(rank, world_size):
    image_all, text_all = ring_global_batch(world_size, seed=12)
    rows = rank_slice(rank)
    results = {}
    for keep_budget in (0, BIG_BUDGET):
        image = image_all[rows].clone().requires_grad_(True)
        text = text_all[rows].clone().requires_grad_(True)
        scale, bias = torch.tensor(3.0, requires_grad=True), torch.tensor(-2.0, requires_grad=True)
        loss = TiledSigLipLoss(rank=rank, world_size=world_size, tile_size=3, keep_tiles_max_bytes=keep_budget)
        tiled_loss, metrics = loss(image, text, scale, bias, return_metrics=True)
        tiled = (tiled_loss.detach(), *torch.autograd.grad(tiled_loss, [image, text, scale, bias]))
        dense_loss, dense_metrics = SigLipLoss(rank=rank, world_size=world_size, dist_impl="shift")(
            image, text, scale, bias, return_metrics=True)
        dense = (dense_loss.detach(), *torch.autograd.grad(dense_loss, [image, text, scale, bias]))
        results[keep_budget] = (tiled, dense, metrics.as_floats(), dense_metrics.as_floats())
    return results


@pytest.mark.parametrize("world_size", [2, 3, pytest.param(4, marks=pytest.mark.slow)])  # 3: odd rings; 4 under -m slow
def test_ring_equals_dense_loss_on_every_rank(world_size):
    per_rank = run_on_workers(_distributed_checks, world_size, timeout_s=120)
    image_all, text_all = ring_global_batch(world_size, seed=12)
    image_all.requires_grad_(True)
    text_all.requires_grad_(True)
    scale, bias = torch.tensor(3.0, requires_grad=True), torch.tensor(-2.0, requires_grad=True)
    # The sum of the ranks' losses is the global loss times N; its feature gradients are what the
    # ranks' features receive.
    global_rows = image_all.shape[0]
    reference = loss_and_grads(dense_siglip_reference, image_all, text_all, scale, bias,
                               divisor=global_rows / world_size)
    scale_grads = bias_grads = losses = 0.0
    for rank, results in enumerate(per_rank):
        rows = rank_slice(rank)
        for tiled, dense, metrics, dense_metrics in results.values():
            assert_all_close(tiled, dense)
            assert metrics == dense_metrics
            assert_all_close(tiled[1:3], (reference[1][rows], reference[2][rows]))
        losses += tiled[0]
        scale_grads += tiled[3]
        bias_grads += tiled[4]
    assert_all_close((losses, scale_grads, bias_grads), (reference[0], reference[3], reference[4]))

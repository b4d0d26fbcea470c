import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from cliplab.distributed.launch import run_on_workers
from cliplab.distributed.ring import Ring
from cliplab.losses.clip import ClipLoss
from cliplab.losses.tiled_clip import TiledClipLoss, TilePlan, tiled_clip_loss

BIG_BUDGET = 2**30


def dense_clip_reference(image, text, scale):
    """Open_clip's global loss written out: mean of the two cross-entropies over [B, B] logits."""
    logits = scale * image @ text.T
    labels = torch.arange(image.shape[0])
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def leaves(batch, dim, seed, dtype=torch.float32, scale=4.0):
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, dim, generator=generator).to(dtype).requires_grad_(True)
    text = torch.randn(batch, dim, generator=generator).to(dtype).requires_grad_(True)
    logit_scale = torch.tensor(scale, requires_grad=True)
    return image, text, logit_scale


def loss_and_grads(loss_fn, *inputs, **kwargs):
    """(loss, its gradient with respect to each input) of loss_fn(*inputs, **kwargs)."""
    loss = loss_fn(*inputs, **kwargs)
    return (loss.detach(), *torch.autograd.grad(loss, inputs))


def assert_all_close(actual, expected):
    """rtol 1e-5; the absolute floor scales with the tensor, whose near-zero entries are fp32
    rounding noise of much larger terms in the dense loss."""
    for got, want in zip(actual, expected):
        floor = 1e-6 * max(1.0, float(want.abs().max()))
        torch.testing.assert_close(got, want.to(got.dtype), rtol=1e-5, atol=floor)


@pytest.mark.parametrize("batch,tile_size", [(1, 4), (5, 8), (12, 4), (12, 5), (13, 1), (7, 3)])
@pytest.mark.parametrize("keep_budget", [0, BIG_BUDGET])
def test_value_and_gradients_equal_the_dense_loss(batch, tile_size, keep_budget):
    image, text, scale = leaves(batch, 6, seed=batch * 31 + tile_size)
    tiled = loss_and_grads(TiledClipLoss(tile_size=tile_size, keep_tiles_max_bytes=keep_budget), image, text, scale)
    reference = loss_and_grads(dense_clip_reference, image, text, scale)
    assert_all_close(tiled, reference)
    assert_all_close(tiled, loss_and_grads(ClipLoss(), image, text, scale))


@pytest.mark.parametrize("local_loss", [False, True])
@pytest.mark.parametrize("gather_with_grad", [False, True])
def test_every_option_matches_clip_loss_in_one_process(local_loss, gather_with_grad):
    image, text, scale = leaves(9, 5, seed=3)
    options = dict(local_loss=local_loss, gather_with_grad=gather_with_grad, normalize=True)
    tiled = loss_and_grads(TiledClipLoss(tile_size=4, **options), image, text, scale)
    assert_all_close(tiled, loss_and_grads(ClipLoss(**options), image, text, scale))


def test_scale_is_clamped_like_clip_loss_with_zero_gradient_above_the_maximum():
    image, text, _ = leaves(6, 4, seed=4)
    scale = torch.tensor(150.0, requires_grad=True)
    tiled = loss_and_grads(TiledClipLoss(tile_size=4), image, text, scale)
    clamped = torch.tensor(100.0, requires_grad=True)
    assert_all_close(tiled[:3], loss_and_grads(dense_clip_reference, image, text, clamped)[:3])
    assert tiled[3] == 0


def test_column_and_row_underflow_take_the_direct_path_and_stay_exact():
    # One image with a huge norm puts some columns' largest logits hundreds below the tile's
    # largest, so the one-exp factorisation would underflow there (forward and backward).
    image, text, scale = leaves(8, 4, seed=5, scale=100.0)
    with torch.no_grad():
        image[0] *= 30.0
    tiled = loss_and_grads(TiledClipLoss(tile_size=3, keep_tiles_max_bytes=BIG_BUDGET), image, text, scale)
    reference = loss_and_grads(dense_clip_reference, image.double(), text.double(), scale.double())
    assert torch.isfinite(tiled[0])
    for got, want in zip(tiled, reference):
        torch.testing.assert_close(got, want.to(got.dtype), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_give_the_dense_loss_of_their_fp32_upcast(dtype):
    assert_half_features_match_their_fp32_upcast(TiledClipLoss(tile_size=4), dense_clip_reference,
                                                 leaves(10, 8, seed=6, dtype=dtype))


def assert_half_features_match_their_fp32_upcast(loss, reference, inputs):
    """`loss` of half-precision features (inputs[0], inputs[1]; fp32 scalars after them) is fp32 and
    equals `reference` of their fp32 upcast; the feature gradients keep the half dtype."""
    value = loss(*inputs)
    assert value.dtype == torch.float32
    grads = torch.autograd.grad(value, list(inputs))
    assert grads[0].dtype == inputs[0].dtype and grads[1].dtype == inputs[1].dtype
    upcast = [tensor.detach().float().requires_grad_(True) for tensor in inputs[:2]] + list(inputs[2:])
    expected = loss_and_grads(reference, *upcast)
    torch.testing.assert_close(value.detach(), expected[0], rtol=1e-5, atol=1e-6)
    for got, want in zip(grads, expected[1:]):
        torch.testing.assert_close(got, want.to(got.dtype))


@pytest.mark.parametrize("keep_tiles", [False, True])
def test_gradcheck_in_float64(keep_tiles):
    generator = torch.Generator().manual_seed(7)
    image = torch.randn(5, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    text = torch.randn(5, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    scale = torch.tensor(2.5, dtype=torch.float64, requires_grad=True)
    plan = TilePlan(ring=Ring(), batch_sizes=(5,), tile_size=2, keep_tiles=keep_tiles, local_rows_loss=False,
                    gradients_from_all_ranks=False, want_metrics=False)
    # A repeated backward recomputes the tiles the first one consumed: equal up to rounding.
    assert torch.autograd.gradcheck(lambda i, t, s: tiled_clip_loss(i, t, s, plan)[0], (image, text, scale),
                                    nondet_tol=1e-12)


def test_metrics_match_clip_loss():
    generator = torch.Generator().manual_seed(8)
    image = torch.randn(11, 6, generator=generator)
    text = image + 0.9 * torch.randn(11, 6, generator=generator)  # some hits, some misses
    (_, tiled), (_, dense) = (loss(image, text, 5.0, return_metrics=True)
                              for loss in (TiledClipLoss(tile_size=4), ClipLoss()))
    assert 0 < tiled.i2t_accuracy < 1 and 0 < tiled.t2i_accuracy < 1
    assert tiled.as_floats() == dense.as_floats()


def test_output_dict_and_second_backward_recomputes_consumed_tiles():
    image, text, scale = leaves(7, 4, seed=9)
    loss = TiledClipLoss(tile_size=3, keep_tiles_max_bytes=BIG_BUDGET)(image, text, scale, output_dict=True)
    assert set(loss) == {"contrastive_loss"}
    loss = loss["contrastive_loss"]
    first = torch.autograd.grad(loss, [image, text, scale], retain_graph=True)
    second = torch.autograd.grad(loss, [image, text, scale])
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_bad_arguments_raise_value_errors_naming_them():
    with pytest.raises(ValueError, match="tile_size"):
        TiledClipLoss(tile_size=0)
    with pytest.raises(ValueError, match="keep_tiles_max_bytes"):
        TiledClipLoss(keep_tiles_max_bytes=-1)
    with pytest.raises(ValueError, match="text_features"):
        TiledClipLoss()(torch.randn(3, 4), torch.randn(4, 4), 1.0)
    with pytest.raises(ValueError, match="logit_scale"):
        TiledClipLoss()(torch.randn(3, 4), torch.randn(3, 4), float("nan"))


class LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an op returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for value in result if isinstance(result, (tuple, list)) else (result,):
            if isinstance(value, torch.Tensor):
                self.largest = max(self.largest, value.numel())
        return result


def test_memory_is_batch_times_tile_above_the_keep_budget():
    batch, dim, tile = 96, 4, 8
    image, text, scale = leaves(batch, dim, seed=10)
    with LargestTensor() as tracker:
        loss = TiledClipLoss(tile_size=tile, keep_tiles_max_bytes=0)(image, text, scale)
        assert all(saved.numel() <= batch * dim for saved in loss.grad_fn.saved_tensors)
        assert loss.grad_fn.kept is None
        loss.backward()
    assert tracker.largest <= max(batch * dim, tile * tile) < batch * batch

    kept_loss = TiledClipLoss(tile_size=tile, keep_tiles_max_bytes=batch * batch * 4)(image, text, scale)
    kept_elements = sum(exp_tile.numel() for exp_tile, _ in kept_loss.grad_fn.kept.values())
    assert kept_elements == batch * batch
    kept_loss.backward()


# Distributed: each rank holds a slice of one global batch (unequal sizes); tiled and dense
# ClipLoss run on the same slices with every option; the global-loss gradient is also compared
# in the parent with the one-process loss on the concatenated batch.
RANK_ROWS = [4, 5, 3, 4]
OPTIONS = [(False, True), (False, False), (True, True), (True, False)]


def ring_global_batch(world_size, seed=11):
    """(image [G, 6], text [G, 6]) for the first `world_size` entries of RANK_ROWS."""
    generator = torch.Generator().manual_seed(seed)
    rows = sum(RANK_ROWS[:world_size])
    return torch.randn(rows, 6, generator=generator), torch.randn(rows, 6, generator=generator)


def rank_slice(rank):
    """Rank `rank`'s rows of the global batch."""
    start = sum(RANK_ROWS[:rank])
    return slice(start, start + RANK_ROWS[rank])


def _distributed_checks(rank, world_size):
    image_all, text_all = ring_global_batch(world_size)
    rows = rank_slice(rank)
    results = {}
    for local_loss, gather_with_grad in OPTIONS:
        for keep_budget in (0, BIG_BUDGET):
            options = dict(local_loss=local_loss, gather_with_grad=gather_with_grad, rank=rank, world_size=world_size)
            image = image_all[rows].clone().requires_grad_(True)
            text = text_all[rows].clone().requires_grad_(True)
            scale = torch.tensor(3.0, requires_grad=True)
            tiled_loss, metrics = TiledClipLoss(tile_size=3, keep_tiles_max_bytes=keep_budget, **options)(
                image, text, scale, return_metrics=True)
            tiled = (tiled_loss.detach(), *torch.autograd.grad(tiled_loss, [image, text, scale]))
            dense_loss, dense_metrics = ClipLoss(**options)(image, text, scale, return_metrics=True)
            dense = (dense_loss.detach(), *torch.autograd.grad(dense_loss, [image, text, scale]))
            results[(local_loss, gather_with_grad, keep_budget)] = (tiled, dense, metrics.as_floats(),
                                                                     dense_metrics.as_floats())
    return results


@pytest.mark.parametrize("world_size", [2, 3, pytest.param(4, marks=pytest.mark.slow)])  # 3: odd rings; 4 under -m slow
def test_ring_equals_dense_loss_on_every_rank_for_every_option(world_size):
    per_rank = run_on_workers(_distributed_checks, world_size, timeout_s=120)
    image_all, text_all = ring_global_batch(world_size)
    image_all.requires_grad_(True)
    text_all.requires_grad_(True)
    scale = torch.tensor(3.0, requires_grad=True)
    reference = loss_and_grads(dense_clip_reference, image_all, text_all, scale)
    for rank, results in enumerate(per_rank):
        rows = rank_slice(rank)
        for (local_loss, gather_with_grad, _), (tiled, dense, metrics, dense_metrics) in results.items():
            assert_all_close(tiled, dense)
            assert metrics == dense_metrics
            if not local_loss:
                factor = world_size if gather_with_grad else 1
                assert_all_close(tiled, (reference[0], factor * reference[1][rows], factor * reference[2][rows],
                                         reference[3]))

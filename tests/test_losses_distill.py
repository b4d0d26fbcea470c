import math

import pytest
import torch
import torch.nn.functional as F

from cliplab.losses.clip import ClipLoss
from cliplab.losses.distill import DistillClipLoss
from loss_helpers import LAYOUTS, OPTION_GRID, rank_rows, results_per_layout_and_option

STUDENT_DIM, TEACHER_DIM = 4, 6
SCALE, TEACHER_SCALE = 3.0, 5.0


def global_batch(global_rows: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    tensors = [F.normalize(torch.randn(global_rows, dim, generator=generator), dim=-1)
               for dim in (STUDENT_DIM, STUDENT_DIM, TEACHER_DIM, TEACHER_DIM)]
    return tuple(tensors)


def run_distill(loss_fn, image, text, teacher_image, teacher_text):
    image, text = image.clone().requires_grad_(True), text.clone().requires_grad_(True)
    scale = torch.tensor(SCALE, requires_grad=True)
    output = loss_fn(image, text, scale, teacher_image, teacher_text, TEACHER_SCALE, output_dict=True)
    (output["contrastive_loss"] + output["distill_loss"]).backward()
    return {"contrastive": output["contrastive_loss"].detach(), "distill": output["distill_loss"].detach(),
            "image_grad": image.grad, "text_grad": text.grad, "scale_grad": scale.grad}


def _distill_worker(rank, world_size, layouts):
    def make_loss(local_loss, gather_with_grad):
        return DistillClipLoss(local_loss=local_loss, gather_with_grad=gather_with_grad, rank=rank,
                               world_size=world_size)
    return results_per_layout_and_option(rank, layouts, global_batch, make_loss, run_distill)


def check_distill_results(world_size, per_rank):
    """Assertions on the per-rank results of _distill_worker (run by test_losses_distributed)."""
    close = dict(rtol=1e-5, atol=1e-7)
    for case_index, case in enumerate(per_rank[0]):
        batch_sizes = LAYOUTS[world_size][case_index // len(OPTION_GRID)]
        reference = run_distill(DistillClipLoss(), *global_batch(sum(batch_sizes)))
        cases = [results[case_index] for results in per_rank]
        for key in ("contrastive", "distill", "scale_grad"):
            torch.testing.assert_close(torch.stack([c[key] for c in cases]).mean(), reference[key], **close)
        for rank, c in enumerate(cases):
            if c["gather_with_grad"] or not c["local_loss"]:
                rows = rank_rows(batch_sizes, rank)
                factor = world_size if c["gather_with_grad"] else 1
                torch.testing.assert_close(c["image_grad"], factor * reference["image_grad"][rows], **close)
                torch.testing.assert_close(c["text_grad"], factor * reference["text_grad"][rows], **close)
            else:
                image_grad, text_grad = local_grads_without_gathered_grad(batch_sizes, rank, world_size)
                torch.testing.assert_close(c["image_grad"], image_grad, **close)
                torch.testing.assert_close(c["text_grad"], text_grad, **close)


def local_grads_without_gathered_grad(batch_sizes, rank, world_size):
    """Rank r's (contrastive + distill) gradients when every gathered column is a constant, by the formula."""
    image, text, teacher_image, teacher_text = global_batch(sum(batch_sizes))
    rows = rank_rows(batch_sizes, rank)
    local_image, local_text = image[rows].clone().requires_grad_(True), text[rows].clone().requires_grad_(True)
    student_per_image, student_per_text = SCALE * local_image @ text.T, SCALE * local_text @ image.T
    teacher_per_image = TEACHER_SCALE * teacher_image[rows] @ teacher_text.T
    teacher_per_text = TEACHER_SCALE * teacher_text[rows] @ teacher_image.T
    labels = torch.arange(rows.start, rows.stop)
    soft_ce = lambda teacher, student: -(teacher.softmax(1) * student.log_softmax(1)).sum()  # noqa: E731
    loss = (F.cross_entropy(student_per_image, labels, reduction="sum")
            + F.cross_entropy(student_per_text, labels, reduction="sum")
            + soft_ce(teacher_per_image, student_per_image) + soft_ce(teacher_per_text, student_per_text)
            ) / (2 * sum(batch_sizes) / world_size)
    loss.backward()
    return local_image.grad, local_text.grad


def test_closed_form_two_pairs():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # student logits 2 * I @ T.T = [[2, 1.2], [0, 1.6]]; teacher logits 1 * I @ I.T = [[1, 0], [0, 1]]
    def soft_ce(teacher_row, student_row):
        teacher_norm = sum(math.exp(t) for t in teacher_row)
        student_log_norm = math.log(sum(math.exp(s) for s in student_row))
        return -sum(math.exp(t) / teacher_norm * (s - student_log_norm) for t, s in zip(teacher_row, student_row))
    teacher = [[1.0, 0.0], [0.0, 1.0]]
    student_rows, student_columns = [[2.0, 1.2], [0.0, 1.6]], [[2.0, 0.0], [1.2, 1.6]]
    expected = (sum(soft_ce(t, s) for t, s in zip(teacher, student_rows))
                + sum(soft_ce(t, s) for t, s in zip(teacher, student_columns))) / 4
    contrastive, distill = DistillClipLoss()(image, text, 2.0, image, image, 1.0)
    assert distill.item() == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(contrastive, ClipLoss()(image, text, 2.0))


def test_teacher_equal_to_student_gives_the_student_entropy():
    image, text, _, _ = global_batch(3)
    contrastive, distill = DistillClipLoss()(image, text, SCALE, image, text, SCALE)
    logits = SCALE * image @ text.T
    entropy = lambda z: -(z.softmax(1) * z.log_softmax(1)).sum(1).mean()  # noqa: E731
    torch.testing.assert_close(distill, (entropy(logits) + entropy(logits.T)) / 2, rtol=1e-6, atol=0)


def test_bad_teacher_input_names_the_argument():
    image, text, teacher_image, teacher_text = global_batch(3)
    with pytest.raises(ValueError, match="dist_image_features"):
        DistillClipLoss()(image, text, SCALE, teacher_image[:2], teacher_text, TEACHER_SCALE)
    with pytest.raises(ValueError, match="dist_text_features"):
        DistillClipLoss()(image, text, SCALE, teacher_image, teacher_text[:, :2], TEACHER_SCALE)
    with pytest.raises(ValueError, match="dist_logit_scale"):
        DistillClipLoss()(image, text, SCALE, teacher_image, teacher_text, float("nan"))

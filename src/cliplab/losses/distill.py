"""CLIP loss plus distillation from a teacher's logits (open_clip's DistillClipLoss API).

Distillation term: for each row of the student's logits, the cross-entropy against the teacher's
softmax over the same columns, -sum_j softmax(teacher)_ij * log_softmax(student)_ij, averaged over
rows and over both directions. The teacher's features are gathered like the student's; its rows
are summed and divided by the same normaliser as the contrastive term, so the distributed terms
average to the one-process value and follow ClipLoss's gradient convention.
"""

from __future__ import annotations

import torch

from cliplab.losses.clip import ClipFamilyLoss, clip_loss_from_logits, clip_metrics, fp32_region
from cliplab.losses.common import as_scalar_tensor, loss_result


def soft_cross_entropy_sum(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """[R, C] x2 -> 0-d: sum over rows of -sum_j softmax(teacher)_j * log_softmax(student)_j."""
    return -(teacher_logits.softmax(dim=1) * student_logits.log_softmax(dim=1)).sum()


class DistillClipLoss(ClipFamilyLoss):
    """open_clip's DistillClipLoss with ClipLoss's distributed semantics (ClipLoss's constructor).

    forward(image_features [B, D], text_features [B, D], logit_scale, dist_image_features [B, D'],
            dist_text_features [B, D'], dist_logit_scale, output_dict=False, *, return_metrics=False)
      -> (contrastive_loss, distill_loss) or {"contrastive_loss", "distill_loss"}; with
         return_metrics, (that, ContrastiveMetrics of the student).
    Both logit scales are clamped to max_logit_scale.
    """

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor | float, dist_image_features: torch.Tensor,
                dist_text_features: torch.Tensor, dist_logit_scale: torch.Tensor | float,
                output_dict: bool = False, *, return_metrics: bool = False):
        if isinstance(dist_image_features, torch.Tensor) and isinstance(image_features, torch.Tensor) \
                and dist_image_features.shape[:1] != image_features.shape[:1]:
            raise ValueError(f"dist_image_features must have one row per image ({image_features.shape[0]}), "
                             f"got shape {tuple(dist_image_features.shape)}")
        as_scalar_tensor(dist_logit_scale, "dist_logit_scale", image_features)
        with fp32_region(image_features):
            student = self.build_logits(image_features, text_features, logit_scale)
            teacher = self.build_logits(dist_image_features, dist_text_features, dist_logit_scale,
                                        image_name="dist_image_features", text_name="dist_text_features",
                                        batch_sizes=student.batch_sizes)
            contrastive = clip_loss_from_logits(student.logits_per_image, student.logits_per_text,
                                                student.labels, student.loss_normalizer)
            distill = (soft_cross_entropy_sum(teacher.logits_per_image, student.logits_per_image)
                       + soft_cross_entropy_sum(teacher.logits_per_text, student.logits_per_text)
                       ) / (2.0 * student.loss_normalizer)
        return loss_result({"contrastive_loss": contrastive, "distill_loss": distill}, output_dict,
                           clip_metrics(student, self.world) if return_metrics else None)


"""acc@k and mean per-class recall: closed forms, and CLIP_benchmark's own functions on the same logits."""

import math

import pytest
import torch

from clip_benchmark_oracle import metrics_modules, numpy_scalars
from cliplab.eval.classification_metrics import classification_metrics, mean_per_class_recall, top_k_accuracies


def test_closed_forms():
    logits = torch.tensor([[3.0, 2.0, 1.0], [0.0, 1.0, 2.0], [1.0, 3.0, 2.0], [2.0, 1.0, 3.0]])
    labels = torch.tensor([0, 1, 2, 0])
    # predictions 0, 2, 1, 2: correct only the first; class 0 recall 1/2, class 1 0/1, class 2 0/1
    assert top_k_accuracies(logits, labels, (1, 2, 3)) == [0.25, 1.0, 1.0]  # every label is in its top 2
    assert mean_per_class_recall(labels, logits.argmax(dim=1)) == pytest.approx((0.5 + 0 + 0) / 3)
    metrics = classification_metrics(logits, labels, top5_defined=False)
    assert metrics["acc1"] == 0.25 and math.isnan(metrics["acc5"])


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("seed", [0, 1])
def test_equal_to_clip_benchmark_with_ties(seed):
    zeroshot_classification, _, _ = metrics_modules()
    from sklearn.metrics import balanced_accuracy_score

    generator = torch.Generator().manual_seed(seed)
    logits = torch.randint(0, 4, (200, 9), generator=generator).float()  # many equal logits
    labels = torch.randint(0, 7, (200,), generator=generator)  # classes 7 and 8 never occur
    with numpy_scalars():
        acc1, acc5 = zeroshot_classification.accuracy(logits, labels, topk=(1, 5))
    ours = classification_metrics(logits, labels, top5_defined=True)
    assert (ours["acc1"], ours["acc5"]) == (acc1, acc5)
    assert ours["mean_per_class_recall"] == pytest.approx(balanced_accuracy_score(labels, logits.argmax(axis=1)),
                                                          rel=1e-12)

"""The evaluator's rule of when an evaluation is due, and what it logs."""

import contextlib

import torch

from cliplab.data import DataConfig
from cliplab.train import evaluation
from cliplab.train.config import EvalConfig
from cliplab.train.evaluation import Evaluator
from cliplab.train.state import TrainState


def test_due_every_n_epochs_and_once_at_the_end(monkeypatch):
    monkeypatch.setattr(evaluation, "evaluate", lambda *args, **kwargs: {"image_to_text_R@1": 0.5})
    logged = []
    evaluator = Evaluator(EvalConfig(zeroshot_frequency=2), DataConfig(), evaluates_at_end=True, model=None,
                          tokenizer=None, transform=None, device=torch.device("cpu"),
                          autocast=contextlib.nullcontext, log=logged.append)
    state = TrainState()
    for step in range(1, 13):  # 3 steps an epoch, 4 epochs
        state.step, epoch_done = step, step % 3 == 0
        state.epoch += epoch_done
        evaluator.evaluate_if_due(state, epoch_done=epoch_done, finished=step == 12)
    assert [(record["step"], record["epoch"]) for record in logged] == [(6, 2), (12, 4)]  # step 12 once
    assert evaluator.last_record == {"kind": "eval", "step": 12, "epoch": 4, "image_to_text_R@1": 0.5}


def test_zero_shot_dataset_takes_the_benchmark_path(tmp_path):
    import pytest

    from benchmark_fixtures import SIZE, preprocess, write_image_folder
    from cliplab.errors import UserError
    from cliplab.eval.zero_shot import zero_shot_classifier, zero_shot_evaluate
    from eval_toy_models import BagOfTokensModel, CharacterTokenizer

    write_image_folder(tmp_path / "shapes", {"test": 10})
    (tmp_path / "shapes" / "zeroshot_classification_templates.txt").write_text("a {c}.\nthe {c}\n")
    data = DataConfig(dataset_type="csv", train_data=str(tmp_path / "train.tsv"))  # no val data: no retrieval
    eval_config = EvalConfig(zeroshot_dataset=str(tmp_path / "shapes"), batch_size=4, zeroshot_num_samples=7)
    zero_shot = evaluation.open_zero_shot_data(data, eval_config)
    model, tokenizer = BagOfTokensModel(image_pixels=3 * SIZE * SIZE).train(), CharacterTokenizer()
    record = evaluation.evaluate(model, tokenizer, data_config=data, eval_config=eval_config, transform=preprocess,
                                 device=torch.device("cpu"), autocast=contextlib.nullcontext, zero_shot=zero_shot)
    assert model.training  # left as it was
    names = zero_shot.classnames.values
    classifier = zero_shot_classifier(model, tokenizer, names, zero_shot.templates.values)
    split = zero_shot.split
    batches = [(torch.stack([preprocess(split.images.read(index)) for index in range(7)]),
                torch.tensor(split.labels[:7]))]
    expected = zero_shot_evaluate(model, classifier, batches, classnames=names).as_metrics()
    assert set(record) == set(expected)  # no retrieval without retrieval data
    for key in ("zero_shot_top1", "zero_shot_top5", "zero_shot_mean_per_class_recall"):
        assert record[key] == pytest.approx(expected[key], abs=1e-12)
    assert record["confusion_matrix"] == expected["confusion_matrix"] and record["zero_shot_count"] == 7
    assert record["zero_shot_mean_per_class_recall"] == pytest.approx(
        sum(record["zero_shot_per_class"].values()) / len(record["zero_shot_per_class"]))
    with pytest.raises(UserError, match=r"^--zeroshot-dataset .*nowhere \(eval.zeroshot_dataset\): dataset .*nowhere: no such file"):
        evaluation.open_zero_shot_data(data, EvalConfig(zeroshot_dataset=str(tmp_path / "nowhere")))

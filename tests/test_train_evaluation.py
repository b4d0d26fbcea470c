"""The evaluator's rule of when an evaluation is due, and what it logs."""

import contextlib
import json

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


def test_validation_data_with_several_captions_counts_an_image_found_by_any_of_them(tmp_path):
    import torch.nn.functional as F

    from cliplab.eval.retrieval import caption_list_metrics
    from data_fixtures import first_pixel_transform, make_manifest
    from eval_toy_models import BagOfTokensModel, CharacterTokenizer

    make_manifest(tmp_path, 5)
    lists = [["a red", "red one"], ["b"], ["c c", "cc", "c"], ["d"], ["e", "ee"]]
    rows = ["filepath\ttitle"] + [f"images/{index}.png\t" + json.dumps(texts) for index, texts in enumerate(lists)]
    (tmp_path / "val.tsv").write_text("\n".join(rows) + "\n")
    data = DataConfig(dataset_type="csv", train_data=str(tmp_path / "val.tsv"), val_data=str(tmp_path / "val.tsv"),
                      workers=0)
    model, tokenizer = BagOfTokensModel(image_pixels=3 * 8 * 8, seed=1), CharacterTokenizer()
    record = evaluation.evaluate(model, tokenizer, data_config=data, eval_config=EvalConfig(batch_size=2),
                                 transform=first_pixel_transform, device=torch.device("cpu"),
                                 autocast=contextlib.nullcontext, dataset=evaluation.open_evaluation_data(data))
    model.eval()
    with torch.no_grad():
        images = torch.stack([first_pixel_transform(evaluation.build_map_dataset(data, train=False).read(
            index, epoch=0).image) for index in range(5)])
        image_features = F.normalize(model.encode_image(images), dim=-1)
        text_features = F.normalize(model.encode_text(tokenizer([text for texts in lists for text in texts])), dim=-1)
    owners = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 4])
    expected = caption_list_metrics(image_features, text_features, owners)
    assert record.keys() == {*expected, "retrieval_count"} and record["retrieval_count"] == 5
    assert record["retrieval_caption_count"] == 9 and "image_to_text_mean_rank" not in record
    for key, value in expected.items():
        assert abs(record[key] - value) < 1e-12, key

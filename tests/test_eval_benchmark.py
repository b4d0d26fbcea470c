"""`run_benchmark` end to end on tiny datasets: every metric equals CLIP_benchmark's own functions run
on the same models and data; images are decoded once per split for all models and tasks; bad input
is one line naming the file."""

import pytest
import torch

import clip_benchmark_oracle as oracle
from benchmark_fixtures import CLASSNAMES, SIZE, preprocess, write_image_folder, write_manifest, random_images
from cliplab.data.benchmark import open_benchmark_dataset
from cliplab.errors import UserError
from cliplab.eval import benchmark as benchmark_module
from cliplab.eval.benchmark import BenchmarkModel, BenchmarkOptions, run_benchmark
from cliplab.eval.linear_probe import Features, LinearProbeConfig
from eval_toy_models import BagOfTokensModel, CharacterTokenizer

pytestmark = pytest.mark.filterwarnings("ignore:'pin_memory':UserWarning", "ignore::UserWarning:sklearn")

TEMPLATES = ("a photo of a {c}.", "the {c}, small.")


def _models():
    return [BenchmarkModel(name=f"toy{seed}", pretrained=f"seed{seed}",
                           model=BagOfTokensModel(image_pixels=3 * SIZE * SIZE, seed=seed).eval(),
                           preprocess=preprocess, tokenizer=CharacterTokenizer(), device=torch.device("cpu"),
                           preprocess_key="pixels") for seed in (0, 1)]


def _images(split):
    return torch.stack([preprocess(split.images.read(index)) for index in range(len(split))])


def test_zero_shot_and_linear_probe_equal_clip_benchmark_for_two_models_in_one_pass(tmp_path, monkeypatch):
    write_image_folder(tmp_path / "shapes", {"train": 18, "val": 8, "test": 12})
    (tmp_path / "shapes" / "zeroshot_classification_templates.txt").write_text("\n".join(TEMPLATES) + "\n")
    dataset = open_benchmark_dataset(str(tmp_path / "shapes"))
    passes = []
    real_pass = benchmark_module.encode_split_images
    monkeypatch.setattr(benchmark_module, "encode_split_images",
                        lambda split, encoders, **kwargs: passes.append((split.name, len(encoders))) or
                        real_pass(split, encoders, **kwargs))
    probe = LinearProbeConfig(epochs=1, lr=0.1, batch_size=8, seed=0)
    options = BenchmarkOptions(tasks=("all",), val_split="val", batch_size=8, probe=probe)
    models = _models()
    results = run_benchmark(models, dataset, options, note=lambda line: None)
    assert sorted(passes) == [("test", 2), ("train", 2), ("val", 2)]  # one decoding pass per split, both models
    assert [(result["model"], result["task"]) for result in results] == [
        ("toy0", "zeroshot_classification"), ("toy0", "linear_probe"),
        ("toy1", "zeroshot_classification"), ("toy1", "linear_probe")]
    splits = {name: dataset.split(name) for name in ("train", "val", "test")}
    classnames = dataset.classnames.values
    for model, zero_shot, probe_result in zip(models, results[0::2], results[1::2]):
        test = splits["test"]
        expected = oracle.zero_shot(model.model, model.tokenizer, _images(test), torch.tensor(test.labels),
                                    classnames, TEMPLATES, batch_size=8)
        assert zero_shot["metrics"] == pytest.approx(expected, rel=1e-12)
        featurizer = oracle.metrics_modules()[2].Featurizer(model.model)
        with torch.no_grad():
            rows = {name: Features(featurizer(_images(split)), torch.tensor(split.labels))
                    for name, split in splits.items()}
        expected = oracle.linear_probe(tmp_path / model.name, rows["train"], rows["test"], rows["val"], epochs=1,
                                       lr=0.1, batch_size=8, seed=0)
        assert probe_result["metrics"] == pytest.approx(expected, rel=1e-6)  # features: batches of 8 vs whole


def test_retrieval_with_several_captions_per_image_equals_clip_benchmark(tmp_path):
    images = random_images(10, seed=3)
    captions = [[f"a {CLASSNAMES[index % 6]}", f"number {index}"][: 1 + index % 2] for index in range(10)]
    write_manifest(tmp_path / "pairs.tsv", images, captions=captions)
    dataset = open_benchmark_dataset(str(tmp_path / "pairs.tsv"))
    models = _models()
    results = run_benchmark(models, dataset, BenchmarkOptions(recall_k=(1, 3), batch_size=4), note=lambda line: None)
    assert [result["task"] for result in results] == ["zeroshot_retrieval"] * 2
    test = dataset.split("test")
    for model, result in zip(models, results):
        expected = oracle.retrieval(model.model, model.tokenizer, _images(test), test.captions, (1, 3), batch_size=4)
        assert result["metrics"] == expected


def test_features_come_from_the_cache_the_second_time(tmp_path, monkeypatch):
    write_image_folder(tmp_path / "set", {"train": 12, "test": 6})
    dataset = open_benchmark_dataset(str(tmp_path / "set"))
    models = [BenchmarkModel(**{**vars(model), "cache_key": {"model": model.name}}) for model in _models()]
    options = BenchmarkOptions(tasks=("linear_probe",), batch_size=4, feature_root=tmp_path / "cache",
                               probe=LinearProbeConfig(epochs=1, batch_size=4))
    first = run_benchmark(models, dataset, options, note=lambda line: None)
    monkeypatch.setattr(benchmark_module, "encode_split_images", lambda *args, **kwargs: pytest.fail("encoded again"))
    assert run_benchmark(models, open_benchmark_dataset(str(tmp_path / "set")), options,
                         note=lambda line: None) == first


def test_bad_input_is_one_line_naming_the_file(tmp_path):
    write_image_folder(tmp_path / "labels_only", {"test": 6})
    dataset = open_benchmark_dataset(str(tmp_path / "labels_only"))
    with pytest.raises(UserError, match=r"--task zeroshot_retrieval needs captions, but .*labels_only/test has "
                                        r"labels only"):
        run_benchmark(_models(), dataset, BenchmarkOptions(tasks=("zeroshot_retrieval",)))
    with pytest.raises(UserError, match=r"--task linear_probe needs a 'train' split to train on"):
        run_benchmark(_models(), dataset, BenchmarkOptions(tasks=("linear_probe",)))
    with pytest.raises(UserError, match=r"labels_only/zeroshot_classification_templates.txt does not exist"):
        run_benchmark(_models(), dataset, BenchmarkOptions(tasks=("zeroshot_classification",)))
    (tmp_path / "labels_only" / "classnames.txt").write_text("one\ntwo\n")
    dataset = open_benchmark_dataset(str(tmp_path / "labels_only"))
    with pytest.raises(UserError, match=r"labels run from 0 to 5 but .*labels_only/classnames.txt names 2 classes"):
        run_benchmark(_models(), dataset, BenchmarkOptions(tasks=("zeroshot_classification",), templates="openai"))
    write_manifest(tmp_path / "pairs.tsv", random_images(3, seed=0), captions=[["a"], ["b"], ["c"]])
    with pytest.raises(UserError, match=r"--recall-k 5: manifest .*pairs.tsv has 3 images and 3 captions"):
        run_benchmark(_models(), open_benchmark_dataset(str(tmp_path / "pairs.tsv")),
                      BenchmarkOptions(recall_k=(1, 5)), note=lambda line: None)

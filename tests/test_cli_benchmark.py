"""`cliplab benchmark` and `cliplab shards --layout clip_benchmark` from the command line."""

import json
import shutil
from pathlib import Path

import pytest
import torch

import clip_benchmark_oracle as oracle
from benchmark_fixtures import write_image_folder
from cliplab.model_io import load
from cliplab.data.benchmark import open_benchmark_dataset
from eval_fixtures import require_fashion_mnist, run_cli

BUNDLE = Path(__file__).resolve().parent / "fixtures" / "bundle_format_1"
TEMPLATES = ("a photo of a {c}.", "a {c}.")
pytestmark = pytest.mark.filterwarnings("ignore:'pin_memory':UserWarning", "ignore::UserWarning:sklearn")


@pytest.fixture
def shapes(tmp_path):
    write_image_folder(tmp_path / "shapes", {"train": 12, "test": 8})
    (tmp_path / "shapes" / "zeroshot_classification_templates.txt").write_text("\n".join(TEMPLATES) + "\n")
    return tmp_path / "shapes"


def test_two_models_all_tasks_results_csv_and_charts(shapes, tmp_path, capsys):
    second = shutil.copytree(BUNDLE, tmp_path / "copy")
    out = tmp_path / "results" / "{model}_{task}.json"
    assert run_cli(["benchmark", "--model", BUNDLE, "--model", second, "--dataset", shapes, "--output", out,
                    "--workers", 0, "--batch-size", 4, "--fewshot-epochs", 1, "--no-feature-cache"]) == 0
    files = sorted(path.name for path in (tmp_path / "results").iterdir())
    assert files == [f"{name}_{task}.json" for name in ("bundle_format_1", "copy")
                     for task in ("linear_probe", "zeroshot_classification")]
    record = json.loads((tmp_path / "results" / "bundle_format_1_zeroshot_classification.json").read_text())
    assert record["dataset"] == "shapes" and record["pretrained"] == str(BUNDLE) and record["language"] == "en"
    printed = capsys.readouterr().out
    assert "test images: 8/8 img (100%)" in printed and "img/s" in printed

    model, preprocess, tokenizer = load(BUNDLE)
    test = open_benchmark_dataset(str(shapes)).split("test")
    images = torch.stack([preprocess(test.images.read(index)) for index in range(len(test))])
    classnames = open_benchmark_dataset(str(shapes)).classnames.values
    expected = oracle.zero_shot(model, tokenizer, images, torch.tensor(test.labels), classnames, TEMPLATES,
                                batch_size=4)
    assert record["metrics"] == pytest.approx(expected, rel=1e-6)

    csv_path = tmp_path / "benchmark.csv"
    assert run_cli(["benchmark", "--build", tmp_path / "results", "--output", csv_path,
                    "--plot", tmp_path / "charts"]) == 0
    assert csv_path.read_text().count("\n") == 5
    assert sorted(path.name for path in (tmp_path / "charts").iterdir()) == ["linear_probe.png",
                                                                          "zeroshot_classification.png"]


def test_bad_input_exits_2_with_one_line(shapes, tmp_path, capsys):
    assert run_cli(["benchmark", "--model", BUNDLE, "--dataset", shapes, "--task", "zeroshot_retrieval",
                    "--output", tmp_path / "r.json"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("cliplab benchmark: error: --task zeroshot_retrieval needs captions") and "\n" not in error
    (tmp_path / "mine.json").write_text("my notes")
    assert run_cli(["benchmark", "--model", BUNDLE, "--dataset", shapes, "--task", "zeroshot_classification",
                    "--output", tmp_path / "mine.json"]) == 2
    assert "mine.json exists and is not a benchmark result" in capsys.readouterr().err
    assert (tmp_path / "mine.json").read_text() == "my notes"


def test_shards_write_the_builtin_split_in_clip_benchmarks_layout(tmp_path, capsys):
    require_fashion_mnist()
    out = tmp_path / "wds_fashion_mnist"
    assert run_cli(["shards", "--from", "fashion-mnist", "--split", "test", "--layout", "clip_benchmark",
                    "--out", out, "--max-samples", 30, "--samples-per-shard", 16]) == 0
    dataset = open_benchmark_dataset(str(out))
    split = dataset.split("test")
    builtin = open_benchmark_dataset("fashion-mnist").split("test")
    assert len(split) == 30 and split.labels == builtin.labels[:30] and split.captions == builtin.captions[:30]
    assert dataset.classnames.values[0] == "t-shirt" and dataset.templates.values[0] == "a photo of the {c}."
    assert (out / "test" / "nshards.txt").read_text() == "2\n"

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cliplab.model_io import load
from cliplab.data import FASHION_MNIST_CLASSNAMES, FASHION_MNIST_TEMPLATES, FashionMnistDataset
from cliplab.eval.retrieval import caption_list_metrics, retrieval_metrics
from cliplab.eval.zero_shot import zero_shot_classifier
from eval_fixtures import NUM_TEST_IMAGES, csv_run, run_cli, trained_run  # noqa: F401  (session fixtures)


def _direct_predictions(bundle, pil_images, classnames, templates):
    model, preprocess, tokenizer = load(bundle)
    with torch.no_grad():
        classifier = zero_shot_classifier(model, tokenizer, classnames, templates)
        features = F.normalize(model.encode_image(torch.stack([preprocess(image) for image in pil_images])), dim=-1)
        return (features @ classifier.T).argmax(dim=1)


def test_fashion_mnist_zero_shot_matches_direct_computation(trained_run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert run_cli(["eval", trained_run.bundle, "--max-samples", 60, "--batch-size", 25, "--out", out]) == 0
    results = json.loads(out.read_text())["zero_shot"]

    test_set = FashionMnistDataset(split="test", download=False)
    samples = [test_set.read(index, epoch=0) for index in range(60)]
    labels = torch.tensor([sample.label for sample in samples])
    predicted = _direct_predictions(trained_run.bundle, [sample.image for sample in samples],
                                    FASHION_MNIST_CLASSNAMES, FASHION_MNIST_TEMPLATES)
    assert results["zero_shot_count"] == 60
    assert results["zero_shot_top1"] == pytest.approx((predicted == labels).float().mean().item())
    assert results["classnames"] == list(FASHION_MNIST_CLASSNAMES)
    confusion = torch.tensor(results["confusion_matrix"])
    assert confusion.shape == (10, 10) and int(confusion.sum()) == 60
    assert confusion.sum(dim=1).tolist() == torch.bincount(labels, minlength=10).tolist()
    for index, name in enumerate(FASHION_MNIST_CLASSNAMES):
        members = labels == index
        if members.any():
            assert results["zero_shot_per_class"][name] == pytest.approx(
                (predicted[members] == index).float().mean().item())
    printed = capsys.readouterr().out
    assert "top-1" in printed and "ankle boot" in printed


def test_run_and_step_directories_give_the_bundle_result(trained_run, tmp_path):
    results = []
    for index, checkpoint in enumerate((trained_run.bundle, trained_run.run_dir, trained_run.step_dir)):
        out = tmp_path / f"{index}.json"
        assert run_cli(["eval", checkpoint, "--max-samples", 20, "--out", out]) == 0
        results.append(json.loads(out.read_text()))
    assert [result["checkpoint"] for result in results] == [str(trained_run.bundle), str(trained_run.step_dir),
                                                            str(trained_run.step_dir)]
    assert results[0]["zero_shot"] == results[1]["zero_shot"] == results[2]["zero_shot"]


def test_class_folders_with_templates_file(trained_run, tmp_path):
    templates = tmp_path / "templates.txt"
    templates.write_text("# my prompts\na photo of the {}.\n\nan image of the {}.\n")
    out = tmp_path / "folders.json"
    assert run_cli(["eval", trained_run.bundle, "--classes-from-folders", trained_run.images_dir,
                    "--templates", templates, "--out", out]) == 0
    results = json.loads(out.read_text())["zero_shot"]
    folder_names = sorted(path.name for path in trained_run.images_dir.iterdir())
    classnames = [name.replace("_", " ") for name in folder_names]
    assert results["classnames"] == classnames and "ankle boot" in classnames
    assert results["templates"] == ["a photo of the {}.", "an image of the {}."]
    paths = [path for name in folder_names for path in sorted((trained_run.images_dir / name).iterdir())]
    labels = torch.tensor([folder_names.index(path.parent.name) for path in paths])
    predicted = _direct_predictions(trained_run.bundle, [Image.open(path).convert("RGB") for path in paths],
                                    classnames, results["templates"])
    assert results["zero_shot_count"] == NUM_TEST_IMAGES
    assert results["zero_shot_top1"] == pytest.approx((predicted == labels).float().mean().item())


def _pairs_manifest(trained_run, path):
    """A tab-separated manifest pairing each test image with its class prompt; returns the captions."""
    captions = [f"a photo of the {FASHION_MNIST_CLASSNAMES[label]}." for label in trained_run.labels]
    rows = [f"{image}\t{caption}" for image, caption in zip(trained_run.image_paths, captions)]
    path.write_text("filepath\ttitle\n" + "\n".join(rows) + "\n")
    return captions


def _direct_retrieval_metrics(trained_run, captions):
    model, preprocess, tokenizer = load(trained_run.bundle)
    with torch.no_grad():
        images = torch.stack([preprocess(Image.open(path).convert("RGB")) for path in trained_run.image_paths])
        image_features = model.encode_image(images, normalize=True)
        text_features = model.encode_text(tokenizer(captions), normalize=True)
    return retrieval_metrics(image_features, text_features, model.logit_scale.exp())


def test_retrieval_on_manifest_matches_direct_metrics(trained_run, tmp_path):
    manifest = tmp_path / "pairs.tsv"
    captions = _pairs_manifest(trained_run, manifest)
    out = tmp_path / "retrieval.json"
    assert run_cli(["eval", trained_run.bundle, "--retrieval-data", manifest, "--no-zero-shot",
                    "--batch-size", 8, "--out", out]) == 0
    results = json.loads(out.read_text())
    assert "zero_shot" not in results
    assert results["retrieval"]["count"] == NUM_TEST_IMAGES
    for key, value in _direct_retrieval_metrics(trained_run, captions).items():
        assert results["retrieval"][key] == pytest.approx(value), key


def test_retrieval_on_webdataset_shards_matches_direct_metrics(trained_run, tmp_path):
    manifest = tmp_path / "pairs.tsv"
    captions = _pairs_manifest(trained_run, manifest)
    assert run_cli(["shards", "--from", manifest, "--out", tmp_path / "shards", "--prefix", "val",
                    "--samples-per-shard", 8]) == 0
    pattern = tmp_path / "shards" / "val-{000000..000002}.tar"
    assert all((tmp_path / "shards" / f"val-{index:06d}.tar").is_file() for index in range(3))
    out = tmp_path / "retrieval.json"
    assert run_cli(["eval", trained_run.run_dir, "--retrieval-data", pattern, "--dataset-type", "webdataset",
                    "--no-zero-shot", "--batch-size", 8, "--out", out]) == 0
    results = json.loads(out.read_text())["retrieval"]
    assert results["count"] == NUM_TEST_IMAGES and results["data"] == str(pattern)
    for key, value in _direct_retrieval_metrics(trained_run, captions).items():
        assert results[key] == pytest.approx(value), key


@pytest.mark.parametrize("command", ["eval", "classify", "embed", "caption"])
def test_not_a_checkpoint_is_a_clear_error(tmp_path, capsys, command):
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    extra = {"eval": [], "classify": [image, "--labels", "a,b"], "embed": ["--images", tmp_path, "--out",
             tmp_path / "e.npy"], "caption": [image]}[command]
    not_a_checkpoint = tmp_path / "nothing_here"
    not_a_checkpoint.mkdir()
    assert run_cli([command, not_a_checkpoint, *extra]) == 2
    error = capsys.readouterr().err
    assert f"cliplab {command}: error:" in error and "is not a checkpoint" in error and str(not_a_checkpoint) in error


def test_bad_arguments_are_named(trained_run, tmp_path, capsys):
    assert run_cli(["eval", trained_run.bundle, "--no-zero-shot"]) == 2
    assert "--retrieval-data" in capsys.readouterr().err
    assert run_cli(["eval", trained_run.bundle, "--retrieval-data", tmp_path / "missing.tsv", "--no-zero-shot"]) == 2
    assert "missing.tsv does not exist" in capsys.readouterr().err
    bad_templates = tmp_path / "bad.txt"
    bad_templates.write_text("no placeholder here\n")
    assert run_cli(["eval", trained_run.bundle, "--templates", bad_templates, "--max-samples", 5]) == 2
    assert "bad.txt line 1" in capsys.readouterr().err


def test_help_lists_commands_and_examples(capsys):
    completed = subprocess.run([sys.executable, "-m", "cliplab", "--help"], capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode == 0
    for command in ("eval", "classify", "embed", "caption", "report"):
        assert command in completed.stdout
    for command in ("eval", "classify", "embed", "caption", "report"):
        with pytest.raises(SystemExit) as exited:
            run_cli([command, "--help"])
        assert exited.value.code == 0
        assert "examples:" in capsys.readouterr().out


@pytest.mark.parametrize("device, message", [
    ("cuda", "--device cuda: CUDA is not available (this torch is built without CUDA); use --device cpu"),
    ("cuda:x", "--device 'cuda:x' is not a device name: expected cpu, cuda or cuda:N"),
    ("meta", "--device meta: cliplab runs on cpu or cuda"),
])
def test_a_device_this_machine_lacks_is_one_line(trained_run, capsys, monkeypatch, device, message):
    # Before: `--device cuda` without CUDA ended in torch's AssertionError.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    assert run_cli(["eval", trained_run.bundle, "--device", device, "--max-samples", 10]) == 2
    assert capsys.readouterr().err == f"cliplab eval: error: {message}\n"


def test_a_csv_run_is_evaluated_on_retrieval_without_fashion_mnist_zero_shot(csv_run, tmp_path, capsys):
    given, default = tmp_path / "given.json", tmp_path / "default.json"
    assert run_cli(["eval", csv_run.run_dir, "--retrieval-data", csv_run.val_manifest, "--out", given]) == 0
    printed = capsys.readouterr().out
    assert "no Fashion-MNIST zero-shot: the run trained on csv data (--zero-shot runs it)" in printed
    assert "retrieval: 12/12 pairs (100%)" in printed  # before: 12/256, the batch size as the total
    assert "zero-shot on" not in printed
    assert run_cli(["eval", csv_run.run_dir, "--out", default]) == 0  # its own validation data
    results, own = json.loads(given.read_text()), json.loads(default.read_text())
    assert "zero_shot" not in results and "zero_shot" not in own
    assert results["retrieval"]["count"] == 12 and own["retrieval"] == results["retrieval"]
    summary = json.loads((csv_run.run_dir / "summary.json").read_text())
    assert results["retrieval"]["image_to_text_R@1"] == pytest.approx(summary["image_to_text_R@1"])


def test_zero_shot_of_a_csv_run_when_asked(csv_run, tmp_path):
    out = tmp_path / "asked.json"
    assert run_cli(["eval", csv_run.run_dir, "--zero-shot", "--max-samples", 10, "--no-zero-shot", "--zero-shot",
                    "--out", out]) == 0
    assert json.loads(out.read_text())["zero_shot"]["zero_shot_count"] == 10


def test_retrieval_on_parquet_equals_retrieval_on_the_same_pairs_as_a_manifest(csv_run, tmp_path):
    pytest.importorskip("pyarrow")
    from data_fixtures import make_manifest, make_parquet

    manifest = make_manifest(tmp_path / "pairs", 12)  # the same images and captions as the parquet file's rows
    parquet = make_parquet(tmp_path / "pairs.parquet", 12, image_key="picture", caption_key="alt", label_key=None)
    results = []
    for index, data in enumerate((["--retrieval-data", manifest],
                                  ["--retrieval-data", parquet, "--dataset-type", "parquet",
                                   "--parquet-image-key", "picture", "--parquet-caption-key", "alt"])):
        out = tmp_path / f"{index}.json"
        assert run_cli(["eval", csv_run.run_dir, *data, "--batch-size", 5, "--out", out]) == 0
        results.append(json.loads(out.read_text())["retrieval"])
    assert results[1]["count"] == 12 and results[1]["data"] == str(parquet)
    assert {k: v for k, v in results[0].items() if k != "data"} == {k: v for k, v in results[1].items() if k != "data"}


def test_eval_progress_in_a_log_file_is_plain_lines(trained_run, capsys):
    assert run_cli(["eval", trained_run.bundle, "--max-samples", 30, "--batch-size", 10]) == 0
    captured = capsys.readouterr()
    assert "zero-shot: 30/30 img (100%)" in captured.out and ", done in " in captured.out
    assert "\r" not in captured.out + captured.err


def test_retrieval_dataset_types_are_the_training_sources_with_a_location(capsys):
    # image-folder is a benchmark layout only: offering it led to "dataset_type must be one of (...)"
    with pytest.raises(SystemExit):
        run_cli(["eval", "--help"])
    assert "--dataset-type {csv,webdataset,parquet}" in capsys.readouterr().out


def test_retrieval_over_several_captions_per_image_counts_any_of_them(trained_run, tmp_path, capsys):
    lists = [[f"a photo of the {FASHION_MNIST_CLASSNAMES[label]}.", f"the {FASHION_MNIST_CLASSNAMES[label]}"]
             for label in trained_run.labels]
    rows = [f"{image}\t{json.dumps(texts)}" for image, texts in zip(trained_run.image_paths, lists)]
    (tmp_path / "lists.tsv").write_text("filepath\ttitle\n" + "\n".join(rows) + "\n")
    out = tmp_path / "retrieval.json"
    assert run_cli(["eval", trained_run.bundle, "--retrieval-data", tmp_path / "lists.tsv", "--no-zero-shot",
                    "--batch-size", 8, "--out", out]) == 0
    printed = capsys.readouterr().out
    assert (f"{NUM_TEST_IMAGES} images, {2 * NUM_TEST_IMAGES} captions (an image is found when any of its captions "
            "is, CLIP_benchmark's rule)") in printed and "mean rank" not in printed
    model, preprocess, tokenizer = load(trained_run.bundle)
    with torch.no_grad():
        images = torch.stack([preprocess(Image.open(path).convert("RGB")) for path in trained_run.image_paths])
        image_features = model.encode_image(images, normalize=True)
        text_features = model.encode_text(tokenizer([text for texts in lists for text in texts]), normalize=True)
    owners = torch.arange(NUM_TEST_IMAGES).repeat_interleave(2)
    results = json.loads(out.read_text())["retrieval"]
    for key, value in caption_list_metrics(image_features, text_features, owners).items():
        assert results[key] == pytest.approx(value), key

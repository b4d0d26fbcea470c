import json

import pytest
import torch
from PIL import Image

from cliplab.model_io import load
from eval_fixtures import run_cli, trained_run  # noqa: F401  (session fixture)

LABELS = ["sneaker", "sandal", "shirt", "bag", "trouser"]


def test_probabilities_sum_to_one_and_match_direct_softmax(trained_run, tmp_path, capsys):
    images = trained_run.image_paths[:3]
    out = tmp_path / "predictions.json"
    assert run_cli(["classify", trained_run.bundle, *images, "--labels", ",".join(LABELS), "--top-k", 3,
                    "--out", out]) == 0
    predictions = json.loads(out.read_text())
    assert [prediction["image"] for prediction in predictions] == [str(path) for path in images]

    model, preprocess, tokenizer = load(trained_run.bundle)
    with torch.no_grad():
        image_features = model.encode_image(torch.stack([preprocess(Image.open(p).convert("RGB")) for p in images]),
                                            normalize=True)
        label_features = model.encode_text(tokenizer([f"a photo of the {label}." for label in LABELS]), normalize=True)
        expected = (min(model.logit_scale.exp().item(), 100.0) * image_features @ label_features.T).softmax(dim=1)
    for prediction, row in zip(predictions, expected):
        probabilities = prediction["probabilities"]
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert [probabilities[label] for label in LABELS] == pytest.approx(row.tolist(), abs=1e-5)
        ranked = prediction["top_k"]
        assert len(ranked) == 3
        assert [label for label, _ in ranked] == [LABELS[i] for i in row.argsort(descending=True)[:3].tolist()]
        assert [p for _, p in ranked] == sorted((p for _, p in ranked), reverse=True)
    printed = capsys.readouterr().out
    assert f"{images[0]}: " in printed and "%" in printed


def test_bad_labels_top_k_and_images(trained_run, tmp_path, capsys):
    image = trained_run.image_paths[0]
    assert run_cli(["classify", trained_run.bundle, image, "--labels", "a,b", "--top-k", 3]) == 2
    assert "--top-k must be in [1, 2]" in capsys.readouterr().err
    assert run_cli(["classify", trained_run.bundle, image, "--labels", "a,,b"]) == 2
    assert "--labels" in capsys.readouterr().err
    assert run_cli(["classify", trained_run.bundle, tmp_path / "missing.png", "--labels", "a,b"]) == 2
    assert "missing.png does not exist" in capsys.readouterr().err
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert run_cli(["classify", trained_run.bundle, broken, "--labels", "a,b"]) == 2
    assert "broken.png cannot be read" in capsys.readouterr().err


def test_a_directory_given_as_an_image_is_named_as_one(trained_run, tmp_path, capsys):
    # Before: "IMAGE <dir> does not exist".
    assert run_cli(["classify", trained_run.bundle, tmp_path, "--labels", "a,b"]) == 2
    assert capsys.readouterr().err == (f"cliplab classify: error: IMAGE {tmp_path} is a directory; pass the image "
                                       f"files in it (e.g. {tmp_path}/*.png)\n")


def _direct_probabilities(bundle, images, prompts):
    model, preprocess, tokenizer = load(bundle)
    with torch.no_grad():
        image_features = model.encode_image(torch.stack([preprocess(Image.open(p).convert("RGB")) for p in images]),
                                            normalize=True)
        label_features = model.encode_text(tokenizer(prompts), normalize=True)
        return (min(model.logit_scale.exp().item(), 100.0) * image_features @ label_features.T).softmax(dim=1)


@pytest.mark.parametrize("labels, extra, prompts", [
    (["a red circle", "a blue square", "sneaker"], [], ["a red circle", "a blue square", "a photo of the sneaker."]),
    (["red circle", "blue square"], ["--template", "{}"], ["red circle", "blue square"]),
    (["circle", "square."], ["--template", "a drawing of a {}."], ["a drawing of a circle.", "square."]),
])
def test_labels_that_are_phrases_are_used_as_written(trained_run, tmp_path, labels, extra, prompts):
    images = trained_run.image_paths[:2]
    out = tmp_path / "predictions.json"
    assert run_cli(["classify", trained_run.bundle, *images, "--labels", ",".join(labels), *extra, "--out", out]) == 0
    expected = _direct_probabilities(trained_run.bundle, images, prompts)
    for prediction, row in zip(json.loads(out.read_text()), expected):
        assert [prediction["probabilities"][label] for label in labels] == pytest.approx(row.tolist(), abs=1e-5)


def test_template_without_a_placeholder_is_named(trained_run, capsys):
    assert run_cli(["classify", trained_run.bundle, trained_run.image_paths[0], "--labels", "a,b",
                    "--template", "a photo"]) == 2
    assert "--template: 'a photo' must contain '{}'" in capsys.readouterr().err


def test_help_states_the_template_and_the_phrase_rule(capsys):
    with pytest.raises(SystemExit):
        run_cli(["classify", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "'a photo of the {}.'" in text and "A label that is a phrase already, starting with a, an or the" in text


def test_help_names_every_checkpoint_format_it_reads(capsys):
    # Before: "bundle, training checkpoint or run directory", though open_clip and HF checkpoints load too.
    from cliplab.cli import main

    with pytest.raises(SystemExit):
        main(["classify", "--help"])
    flat = " ".join(capsys.readouterr().out.split())
    for shown in ("cliplab run, step or bundle directory", "open_clip hub directory", "OpenAI CLIP .pt",
                  "Hugging Face CLIP/SigLIP directory", "hub:org/repo"):  # argparse may wrap at "hf-"
        assert shown in flat, shown

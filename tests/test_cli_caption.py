import json

import torch
from PIL import Image

import cliplab
from eval_fixtures import coca_run, run_cli, trained_run  # noqa: F401  (session fixtures)


def test_coca_captions_every_image(coca_run, trained_run, tmp_path, capsys):
    images = trained_run.image_paths[:3]
    out = tmp_path / "captions.json"
    assert run_cli(["caption", coca_run, *images, "--max-length", 6, "--batch-size", 2, "--out", out]) == 0
    captions = json.loads(out.read_text())
    assert list(captions) == [str(path) for path in images]
    model, preprocess, tokenizer = cliplab.load(coca_run)
    with torch.no_grad():
        pixels = torch.stack([preprocess(Image.open(path).convert("RGB")) for path in images])
        expected = tokenizer.batch_decode(model.generate(pixels, tokenizer, max_length=6))
    assert list(captions.values()) == expected
    printed = capsys.readouterr().out
    assert all(f"{path}: " in printed for path in images)


def test_top_k_sampling_is_seeded(coca_run, trained_run, tmp_path):
    results = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.json"
        assert run_cli(["caption", coca_run, trained_run.image_paths[0], "--strategy", "top_k", "--top-k", 5,
                        "--seed", 3, "--max-length", 8, "--out", out]) == 0
        results.append(json.loads(out.read_text()))
    assert results[0] == results[1]


def test_non_coca_checkpoint_is_refused(trained_run, capsys):
    assert run_cli(["caption", trained_run.bundle, trained_run.image_paths[0]]) == 2
    error = capsys.readouterr().err
    assert "cannot caption" in error and "CoCa" in error and "'clip'" in error

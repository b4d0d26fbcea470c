"""examples/ and the Python API snippet of docs/using.md: each runs against a checkpoint of a real short
training run, and what it prints equals what the `cliplab eval` command computes for the same images."""

import json
import re
import runpy
import sys
from pathlib import Path

import pytest

from cliplab.data import FashionMnistDataset
from eval_fixtures import NUM_TEST_IMAGES, run_cli, trained_run  # noqa: F401  (session fixture)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def test_use_a_trained_model_prints_what_cliplab_eval_computes(trained_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["use_a_trained_model.py", str(trained_run.run_dir),
                                      "--num-images", str(NUM_TEST_IMAGES)])
    runpy.run_path(str(EXAMPLES / "use_a_trained_model.py"), run_name="__main__")
    printed = capsys.readouterr().out
    top1 = float(re.search(rf"zero-shot top-1 on {NUM_TEST_IMAGES} images: ([0-9.]+)", printed).group(1))
    printed_metrics = {name: float(value) for name, value in re.findall(r"^(\w+_(?:rank|R@\d+)): ([0-9.]+)$",
                                                                         printed, flags=re.MULTILINE)}
    assert len(printed_metrics) == 10

    # the same first test images, each with its epoch-0 caption, as a manifest for `cliplab eval`
    test_set = FashionMnistDataset(split="test", download=False)
    captions = [test_set.read(index, epoch=0).caption for index in range(NUM_TEST_IMAGES)]
    manifest = tmp_path / "pairs.tsv"
    manifest.write_text("filepath\ttitle\n" + "".join(
        f"{path}\t{caption}\n" for path, caption in zip(trained_run.image_paths, captions)))
    out = tmp_path / "eval.json"
    assert run_cli(["eval", trained_run.run_dir, "--max-samples", NUM_TEST_IMAGES, "--retrieval-data", manifest,
                    "--out", out]) == 0
    expected = json.loads(out.read_text())
    assert top1 == pytest.approx(expected["zero_shot"]["zero_shot_top1"], abs=5e-5)
    for name, value in printed_metrics.items():
        assert value == pytest.approx(expected["retrieval"][name], abs=5e-5), name


@pytest.mark.parametrize("document", ["docs/using.md", "README.md"])
def test_python_api_snippet_of_the_docs_runs(document, trained_run, tmp_path, capsys):
    text = (ROOT / document).read_text()
    snippet = re.search(r"## Python API\n\n```python\n(.*?)```", text, flags=re.DOTALL).group(1)
    assert 'cliplab.load("logs/tiny-run")' in snippet
    exec(compile(snippet.replace('"logs/tiny-run"', repr(str(trained_run.run_dir))), document, "exec"), {})
    printed = capsys.readouterr().out
    top1 = float(re.search(r"^zero-shot top-1: ([0-9.]+)$", printed, flags=re.MULTILINE).group(1))
    assert "'image_to_text_R@1': " in printed and "'text_to_image_median_rank': " in printed
    out = tmp_path / "eval.json"
    assert run_cli(["eval", trained_run.run_dir, "--max-samples", 100, "--out", out]) == 0
    assert top1 == pytest.approx(json.loads(out.read_text())["zero_shot"]["zero_shot_top1"], abs=1e-6)

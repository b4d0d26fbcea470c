import json

import numpy as np

from cliplab.cli.report_command import similarity_data
from cliplab.data import FashionMnistDataset
import cliplab.eval.plots as plots
from eval_fixtures import STEPS, assert_valid_png, csv_run, run_cli, trained_run  # noqa: F401  (session fixtures)

EXPECTED_FIGURES = ("loss.png", "learning_rate.png", "logit_scale.png", "batch_accuracy.png",
                    "zero_shot_accuracy.png", "retrieval.png", "confusion_matrix.png", "similarity_matrix.png")


def _capture_similarity_plot(monkeypatch) -> dict:
    """The arguments `cliplab report` draws the similarity matrix with (the figure is still written)."""
    drawn = {}
    real = plots.plot_similarity_matrix

    def capturing(path, similarity, images, texts, title):
        drawn.update(similarity=similarity, images=images, texts=texts, title=title)
        return real(path, similarity, images, texts, title)

    monkeypatch.setattr(plots, "plot_similarity_matrix", capturing)
    return drawn


def test_report_writes_valid_figures_and_markdown(trained_run, tmp_path, monkeypatch):
    drawn = _capture_similarity_plot(monkeypatch)
    out_dir = tmp_path / "report"
    assert run_cli(["report", trained_run.run_dir, "--out-dir", out_dir]) == 0
    test_split = FashionMnistDataset(split="test", download=False)
    first_of_each_class = [int(np.flatnonzero(test_split.labels == label)[0]) for label in range(10)]
    first_of_each_class.sort()
    assert drawn["texts"] == tuple(test_split.read(index, epoch=0).caption for index in first_of_each_class)
    assert "a photo of the" not in " ".join(drawn["texts"])  # the run's own captions, not prompts
    for index, image in zip(first_of_each_class, drawn["images"]):  # the images as the model saw them
        assert np.abs(image[..., 0].astype(int) - test_split.images[index]).max() <= 1
    assert drawn["similarity"].shape == (10, 10)
    for name in EXPECTED_FIGURES:
        assert_valid_png(out_dir / name)
    markdown = (out_dir / "report.md").read_text()
    for name in EXPECTED_FIGURES:
        assert f"]({name})" in markdown
    summary = trained_run.summary
    assert summary["steps"] == STEPS and f"| steps | {STEPS} |" in markdown
    assert f"Logged {STEPS} training records and 2 evaluations." in markdown
    assert f"## Last evaluation (step {STEPS})" in markdown
    for name, accuracy in summary["zero_shot_per_class"].items():
        assert f"| {name} | {accuracy:.4g} |" in markdown
    assert f"| zero_shot_top1 | {summary['zero_shot_top1']:.4g} |" in markdown
    assert trained_run.step_dir.name == f"step_{STEPS:07d}" and trained_run.step_dir.name in markdown


def test_report_without_similarity_loads_no_model(trained_run, tmp_path):
    out_dir = tmp_path / "metrics_only"
    assert run_cli(["report", trained_run.run_dir, "--out-dir", out_dir, "--no-similarity"]) == 0
    assert not (out_dir / "similarity_matrix.png").exists()
    assert "--no-similarity" in (out_dir / "report.md").read_text()


def test_run_without_checkpoint_or_evaluations(tmp_path):
    run_dir = tmp_path / "early_run"
    run_dir.mkdir()
    lines = [{"kind": "train", "step": step, "lr": 0.001, "loss": 3.0 - 0.1 * step, "logit_scale": 14.3,
              "i2t_accuracy": 0.1, "t2i_accuracy": 0.1} for step in range(1, 6)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"kind": "tr')
    assert run_cli(["report", run_dir]) == 0
    report_dir = run_dir / "report"
    assert_valid_png(report_dir / "loss.png")
    assert not (report_dir / "confusion_matrix.png").exists()
    markdown = (report_dir / "report.md").read_text()
    assert "no checkpoint to load" in markdown and "No evaluation has been logged" in markdown


def test_not_a_run_directory(tmp_path, capsys):
    assert run_cli(["report", tmp_path]) == 2
    assert "has no metrics.jsonl" in capsys.readouterr().err
    assert run_cli(["report", tmp_path / "absent"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_similarity_of_a_csv_run_shows_its_validation_pairs(csv_run, tmp_path, monkeypatch):
    drawn = _capture_similarity_plot(monkeypatch)
    assert run_cli(["report", csv_run.run_dir, "--out-dir", tmp_path]) == 0
    assert drawn["texts"] == tuple(f"val caption {index}" for index in range(10))  # unlabelled: distinct captions
    for index, image in enumerate(drawn["images"]):  # write_png's colour of image i: (i, i // 2, 255 - i)
        assert np.abs(image.reshape(-1, 3).astype(int) - [index, index // 2, 255 - index]).max() <= 1
    markdown = (tmp_path / "report.md").read_text()
    assert f"the first 10 image-caption pairs of the run's validation data ({csv_run.val_manifest})" in markdown
    assert "![Retrieval recall](retrieval.png)" in markdown


def test_a_run_without_validation_data_shows_training_pairs(tmp_path):
    from cliplab.train.config.io import resolve_config, save_config

    save_config(resolve_config(None, {"data.dataset_type": "parquet", "data.train_data": "train-*.parquet",
                                      "data.parquet_caption_key": "alt"}), tmp_path / "config.json")
    data, described = similarity_data(tmp_path, None)
    assert (data.dataset_type, data.val_data, data.parquet_caption_key) == ("parquet", "train-*.parquet", "alt")
    assert described == "training data (train-*.parquet; the run has no validation data)"


def test_a_report_whose_data_is_gone_still_writes_the_metrics_figures(tmp_path, trained_run):
    import shutil

    run_dir = tmp_path / "moved_run"
    shutil.copytree(trained_run.run_dir, run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    config["data"].update(dataset_type="csv", val_data=str(tmp_path / "gone.tsv"))
    (run_dir / "config.json").write_text(json.dumps(config))
    assert run_cli(["report", run_dir]) == 0
    assert (run_dir / "report" / "loss.png").is_file() and not (run_dir / "report" / "similarity_matrix.png").exists()
    assert "Similarity matrix skipped: manifest" in (run_dir / "report" / "report.md").read_text()

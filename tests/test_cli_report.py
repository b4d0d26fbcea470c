import json

from eval_fixtures import STEPS, assert_valid_png, run_cli, trained_run  # noqa: F401  (session fixture)

EXPECTED_FIGURES = ("loss.png", "learning_rate.png", "logit_scale.png", "batch_accuracy.png",
                    "zero_shot_accuracy.png", "retrieval.png", "confusion_matrix.png", "similarity_matrix.png")


def test_report_writes_valid_figures_and_markdown(trained_run, tmp_path):
    out_dir = tmp_path / "report"
    assert run_cli(["report", trained_run.run_dir, "--out-dir", out_dir]) == 0
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

import json

import pytest

from cliplab.eval.report import RunMetrics, read_metrics, report_markdown, series, training_figures
from eval_fixtures import assert_valid_png


def _write_lines(path, records, tail=""):
    path.write_text("".join(json.dumps(record) + "\n" for record in records) + tail)
    return path


def test_read_metrics_splits_kinds_and_skips_a_truncated_last_line(tmp_path):
    path = _write_lines(tmp_path / "metrics.jsonl", [
        {"kind": "train", "step": 1, "loss": 2.0}, {"kind": "eval", "step": 1, "zero_shot_top1": 0.5},
        {"kind": "train", "step": 2, "loss": 1.5}], tail='{"kind": "train", "st')
    with pytest.warns(UserWarning, match="line 4 is truncated"):
        metrics = read_metrics(path)
    assert [record["step"] for record in metrics.train] == [1, 2]
    assert metrics.evals[0]["zero_shot_top1"] == 0.5


def test_malformed_middle_line_is_an_error(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"kind": "train", "step": 1}\nnot json\n{"kind": "train", "step": 2}\n')
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        read_metrics(path)


def test_series_keeps_finite_numbers_only():
    records = ({"step": 1, "loss": 2.0}, {"step": 2, "loss": float("nan")}, {"step": 3}, {"step": 4, "loss": 1.0},
               {"step": 5, "loss": True})
    assert series(records, "loss") == ([1.0, 4.0], [2.0, 1.0])


def test_figures_follow_available_data(tmp_path):
    train = tuple({"kind": "train", "step": step, "loss": 3.0 / step, "loss/contrastive_loss": 2.0 / step,
                   "lr": 0.1 * step} for step in range(1, 8))
    figures = training_figures(RunMetrics(train=train, evals=()), tmp_path)
    assert set(figures) == {"Loss terms", "Learning rate"}
    for path in figures.values():
        assert_valid_png(path)
    markdown = report_markdown(tmp_path, tmp_path, RunMetrics(train=train, evals=()), {"steps": 7, "nested": {"a": 1}},
                               figures, ["a note"])
    assert "![Loss terms](loss.png)" in markdown and "| nested/a | 1 |" in markdown and "- a note" in markdown

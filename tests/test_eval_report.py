import json

import pytest

from cliplab.eval.report import (FRACTION, RunMetrics, distinct_series, draw_series_figure, read_metrics,
                                 report_markdown, series, series_figures, training_figures)
from eval_fixtures import assert_valid_png, trained_run  # noqa: F401  (session fixture)


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


def _figure(metrics, title):
    (figure,) = [figure for figure in series_figures(metrics) if figure.title == title]
    return figure


def _assert_series_distinct(figure):
    drawn = list(figure.series.values())
    assert all(drawn[i] != drawn[j] for i in range(len(drawn)) for j in range(i + 1, len(drawn))), figure.title


def test_a_total_equal_to_its_only_term_is_one_line():
    train = tuple({"kind": "train", "step": step, "loss": 3.0 / step, "loss/contrastive_loss": 3.0 / step}
                  for step in range(1, 5))
    loss = _figure(RunMetrics(train=train, evals=()), "Loss terms")
    assert list(loss.series) == ["loss = loss/contrastive_loss"]
    assert [line.get_label() for line in draw_series_figure(loss).axes[0].get_lines()] == list(loss.series)


def test_a_total_with_two_terms_is_three_distinct_lines():
    train = tuple({"kind": "train", "step": step, "loss": 3.0 / step, "loss/contrastive_loss": 2.0 / step,
                   "loss/caption_loss": 1.0 / step} for step in range(1, 5))
    loss = _figure(RunMetrics(train=train, evals=()), "Loss terms")
    assert list(loss.series) == ["loss", "loss/caption_loss", "loss/contrastive_loss"]
    _assert_series_distinct(loss)


def test_distinct_series_merges_every_copy_into_the_first():
    a, b = ([1.0, 2.0], [0.5, 0.4]), ([1.0, 2.0], [0.5, 0.3])
    assert distinct_series({"x": a, "y": b, "z": a}) == {"x = z": a, "y": b}


def _eval(step, scale):
    return {"kind": "eval", "step": step, **{key: scale * rank / 10 for rank, key in enumerate(
        ("image_to_text_R@1", "text_to_image_R@1", "image_to_text_R@5", "text_to_image_R@5", "image_to_text_R@10",
         "text_to_image_R@10"), start=1)}}


def test_a_single_evaluation_is_drawn_as_bars_on_a_fraction_axis():
    retrieval = _figure(RunMetrics(train=(), evals=(_eval(175, 1.0),)), "Retrieval recall")
    assert retrieval.bars and retrieval.y_limits == FRACTION
    axis = draw_series_figure(retrieval).axes[0]
    assert [bar.get_height() for bar in axis.patches] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert [label.get_text() for label in axis.get_xticklabels()] == list(retrieval.series)
    assert axis.get_ylim() == FRACTION and "step 175" in axis.get_title()


def test_equal_values_of_one_evaluation_stay_separate_bars():
    record = {"kind": "eval", "step": 3, "image_to_text_R@1": 0.25, "text_to_image_R@1": 0.25}
    assert list(_figure(RunMetrics(train=(), evals=(record,)), "Retrieval recall").series) == [
        "image_to_text_R@1", "text_to_image_R@1"]


def test_evaluations_over_time_are_lines_on_a_fraction_axis():
    retrieval = _figure(RunMetrics(train=(), evals=(_eval(10, 1.0), _eval(20, 1.5))), "Retrieval recall")
    assert not retrieval.bars
    axis = draw_series_figure(retrieval).axes[0]
    assert axis.get_ylim() == FRACTION
    low, high = axis.get_xlim()
    assert low <= 10 and high >= 20 and high - low < 20  # the steps evaluated, not an axis around one point


def test_the_trained_runs_figures_have_no_identical_series(trained_run):
    metrics = read_metrics(trained_run.run_dir / "metrics.jsonl")
    figures = series_figures(metrics)
    assert {figure.title for figure in figures} == {"Loss terms", "Learning rate", "Logit scale", "In-batch accuracy",
                                                    "Zero-shot accuracy", "Retrieval recall"}
    assert list(_figure(metrics, "Loss terms").series) == ["loss = loss/contrastive_loss"]
    for figure in figures:
        assert not figure.bars  # two evaluations, many steps
        _assert_series_distinct(figure)

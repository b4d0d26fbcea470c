"""summary.json is strict JSON: a value that is not finite is written as null and named."""

import json
import math

import pytest

from cliplab.eval.chance import percent
from cliplab.train import TrainHooks, train
from cliplab.train.metrics.summary import strict_summary, write_summary
from cliplab.train.step.accumulation import LossOutput

from train_helpers import small_config


def _strict_load(text):
    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_values_become_null_and_are_listed():
    summary = {"steps": 3, "final_loss": math.nan, "zero_shot_per_class": {"bag": math.inf, "shirt": 0.5},
               "curve": [1.0, -math.inf]}
    assert strict_summary(summary) == {"steps": 3, "final_loss": None,
                                       "zero_shot_per_class": {"bag": None, "shirt": 0.5}, "curve": [1.0, None],
                                       "nonfinite": ["final_loss", "zero_shot_per_class.bag", "curve[1]"]}
    assert strict_summary({"steps": 3, "final_loss": 0.5}) == {"steps": 3, "final_loss": 0.5}


def test_write_summary_refuses_what_is_not_json(tmp_path):
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        write_summary(tmp_path, {"steps": 1, "samples_seen": 8, "wall_seconds": 1.0, "final_loss": math.nan})
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_a_run_whose_last_loss_is_nan_writes_null_and_says_why(tmp_path):
    # Before: summary.json held `"final_loss": NaN`, which strict JSON readers reject.
    def nan_at_the_last_step(step, output):
        if step == 2:  # 0-based: the third step
            return LossOutput(output.total * math.nan, output.terms, output.metrics)
        return output

    result = train(small_config(tmp_path, name="run", steps=3), hooks=TrainHooks(modify_loss=nan_at_the_last_step))
    written = _strict_load((tmp_path / "run" / "summary.json").read_text())
    assert written == result.summary
    assert written["final_loss"] is None and written["nonfinite"] == ["final_loss"]
    assert written["nonfinite_skips"] == 1


def test_the_summary_and_the_done_line_say_at_which_step_the_figures_were_measured(tmp_path, capsys):
    # Before: a run resumed with eval_at_end false reported the earlier attempt's zero-shot top-1 as
    # if measured at its end, with no step anywhere.
    first = train(small_config(tmp_path, name="run", steps=2, evaluate=True)).summary
    assert (first["eval_step"], first["eval_epoch"], first["final_loss_step"]) == (2, 0, 2)
    assert capsys.readouterr().out.splitlines()[-1].startswith(
        f"done: 2 steps, 16 samples in {first['wall_seconds']:.0f} s; zero-shot top-1 "
        f"{percent(first['zero_shot_top1'])}, top-5 {percent(first['zero_shot_top5'])} at step 2; summary in ")

    resumed = small_config(tmp_path, name="run", steps=4)  # eval_at_end false
    resumed.checkpoint.resume, resumed.checkpoint.allow_config_change = "latest", ("loop.max_steps",)
    summary = train(resumed).summary
    assert summary["zero_shot_top1"] == first["zero_shot_top1"]
    assert (summary["steps"], summary["eval_step"], summary["final_loss_step"]) == (4, 2, 4)
    assert _strict_load((tmp_path / "run" / "summary.json").read_text()) == summary
    assert (f"zero-shot top-1 {percent(first['zero_shot_top1'])}, top-5 {percent(first['zero_shot_top5'])} at step 2, "
            "not the final step 4; summary in ") in capsys.readouterr().out

"""Every experiment config's tiny twin trains and evaluates on a CPU in seconds (big_vision's runlocal)."""

from pathlib import Path

import pytest

from cliplab.train import resolve_config, train

TWINS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*-tiny.yaml"))


@pytest.mark.parametrize("path", TWINS, ids=[path.stem for path in TWINS])
def test_tiny_twin_runs(path, tmp_path):
    config = resolve_config(path, {"logging.logs": str(tmp_path), "logging.name": path.stem})
    result = train(config)
    assert result.summary["steps"] == config.loop.max_steps
    assert 0.0 <= result.summary["zero_shot_top1"] <= 1.0
    assert "image_to_text_R@1" in result.summary

"""The full default run, `python -m cliplab train` with no arguments, reaches the issue's target:
zero-shot top-1 >= 0.92 on the Fashion-MNIST test split (above a supervised two-layer convnet's
91.6%). Minutes on a 2-core CPU, so slow; the time is a benchmark (BENCHMARKS.md), not asserted
here. The run reached 0.928 on an AMD EPYC; another processor rounds differently and takes another
trajectory, which moved the final top-1 by a few thousandths between seeds (docs/training.md, "The
default recipe"), inside the margin."""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_default_run_beats_the_supervised_convnet_zero_shot(tmp_path):
    # No arguments: the run directory goes to ./logs/<generated name>, so run inside tmp_path.
    completed = subprocess.run([sys.executable, "-m", "cliplab", "train"], cwd=tmp_path, capture_output=True,
                               text=True, timeout=3500)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    summaries = list((tmp_path / "logs").glob("*/summary.json"))
    assert len(summaries) == 1, summaries
    summary = json.loads(summaries[0].read_text())
    assert summary["zero_shot_top1"] >= 0.92, {key: summary[key] for key in ("zero_shot_top1", "steps", "wall_seconds")}

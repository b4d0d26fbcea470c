"""summary.json: the outcome of a run, as strict JSON, and the run's closing line.

The closing line and the summary say at which step each figure was measured (`eval_step` for the
evaluation's keys, `final_loss_step` for `final_loss`): a run resumed without a final evaluation
reports the last one an earlier attempt logged, which may be older than the final step.

JSON has no NaN or infinity (Python's json module writes them as bare `NaN`, which strict readers
reject). A value that is not finite, a final loss of NaN after skipped steps say, is written as
`null` and its key listed under "nonfinite", so that a reader can tell "not a number" from "not
measured". The file is replaced atomically: a kill while writing it leaves the previous summary.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cliplab.eval.chance import percent
from cliplab.eval.run_layout import SUMMARY_FILE
from cliplab.train.checkpointing.atomic_files import write_text_atomic

NONFINITE_KEY = "nonfinite"


def strict_json_values(value: Any, key: str = "") -> tuple[Any, list[str]]:
    """`value` with every non-finite float (at any depth of dicts and lists) replaced by None, and the
    dotted keys of those replaced (list positions as [i])."""
    if isinstance(value, float) and not math.isfinite(value):
        return None, [key]
    if isinstance(value, dict):
        cleaned, replaced = {}, []
        for name, item in value.items():
            cleaned[name], inner = strict_json_values(item, f"{key}.{name}" if key else str(name))
            replaced += inner
        return cleaned, replaced
    if isinstance(value, (list, tuple)):
        cleaned, replaced = [], []
        for index, item in enumerate(value):
            item, inner = strict_json_values(item, f"{key}[{index}]")
            cleaned.append(item)
            replaced += inner
        return cleaned, replaced
    return value, []


def strict_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary as written: non-finite values as None, their keys under "nonfinite" (when any)."""
    cleaned, replaced = strict_json_values(summary)
    if replaced:
        cleaned[NONFINITE_KEY] = replaced
    return cleaned


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    """Write summary.json (strict JSON, atomically) and print the closing line of the run."""
    path = run_dir / SUMMARY_FILE
    text = json.dumps(summary, indent=2, allow_nan=False) + "\n"
    write_text_atomic(path, text)
    evaluation = ""
    if "zero_shot_top1" in summary:
        evaluation = f"; zero-shot top-1 {_shown(summary['zero_shot_top1'])}, top-5 {_shown(summary['zero_shot_top5'])}"
    elif "image_to_text_R@1" in summary:  # data without classes: retrieval only
        evaluation = (f"; retrieval R@1 image-to-text {_shown(summary['image_to_text_R@1'])}, "
                      f"text-to-image {_shown(summary['text_to_image_R@1'])}")
    # What the figures measure, and their chance levels, the evaluation's lines above say.
    if evaluation:
        evaluation += _measured_at(summary["eval_step"], summary["steps"])
    print(f"done: {summary['steps']} steps, {summary['samples_seen']} samples in {summary['wall_seconds']:.0f} s"
          + evaluation + f"; summary in {path}")


def _measured_at(step: int, steps: int) -> str:
    """When the figures were measured: the last step, or an earlier one (a resumed run that does
    not evaluate at its end reports its last evaluation)."""
    return f" at step {step}" if step == steps else f" at step {step}, not the final step {steps}"


def _shown(value: float | None) -> str:
    return "n/a" if value is None else percent(value)

"""How far the golden 50-step trajectory drifts when its arithmetic changes by about one ulp.

The committed golden losses (tests/fixtures/golden_losses.json) hold this machine's fp32 values;
another x86-64 processor's kernels (AVX-512 instead of AVX2, another reduction order) round
differently in the last bits. This script measures how such a difference grows over the 50 steps,
so that tests/test_train_golden.py compares the committed trajectory with a tolerance that holds
across processors and still catches a real change. Perturbations of the reference run:

  loss_ulp_step1   step 1's loss (and so its gradients) scaled by 1 + 2**-23 (one fp32 ulp)
  loss_ulp_every   every step's loss scaled by 1 + 2**-23 (a last-bit difference at every step)
  two_threads      torch intra-op threads 2 instead of 1 (other blocking and reduction orders in
                   the matmuls, the closest stand-in here for another processor's kernels)

and, for scale, a change the test must catch: lr 1e-3 * (1 + 1e-4).

    python benchmarks/golden_drift.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import torch  # noqa: E402

from benchmarks.report import format_table, write_section  # noqa: E402
from golden_run import STEPS, golden_config, losses_of_run  # noqa: E402

from cliplab.train import TrainHooks, train  # noqa: E402
from cliplab.train.step.accumulation import LossOutput  # noqa: E402

ULP = 2.0 ** -23


def _scaled_loss(steps: set[int] | None):
    def modify(step: int, output: LossOutput) -> LossOutput:
        if steps is None or step in steps:
            return LossOutput(output.total * (1 + ULP), output.terms, output.metrics)
        return output
    return modify


def _run(name: str, logs: Path) -> list[float]:
    config = golden_config(logs / name)
    hooks = TrainHooks()
    if name == "loss_ulp_step1":
        hooks = TrainHooks(modify_loss=_scaled_loss({0}))
    elif name == "loss_ulp_every":
        hooks = TrainHooks(modify_loss=_scaled_loss(None))
    elif name == "two_threads":
        config.loop.threads = 2
    elif name == "lr_plus_1e-4":
        config.optim.lr *= 1 + 1e-4
    return losses_of_run(train(config, hooks=hooks).run_dir)


def _relative(losses: list[float], reference: list[float]) -> list[float]:
    return [abs(a - b) / abs(b) for a, b in zip(losses, reference)]


def main() -> int:
    with tempfile.TemporaryDirectory() as logs:
        reference = _run("reference", Path(logs))
        rows = []
        for name in ("loss_ulp_step1", "loss_ulp_every", "two_threads", "lr_plus_1e-4"):
            relative = _relative(_run(name, Path(logs)), reference)
            worst = max(range(STEPS), key=lambda step: relative[step])
            rows.append([name, f"{relative[0]:.1e}", f"{max(relative[:10]):.1e}", f"{max(relative):.1e}",
                         worst + 1])
            print(rows[-1], flush=True)
    body = ("Relative difference |loss - reference| / reference of the golden run's logged losses "
            f"({STEPS} steps, tests/golden_run.py), per perturbation (see the script's docstring).\n\n"
            + format_table(["perturbation", "step 1", "max over steps 1-10", f"max over steps 1-{STEPS}",
                            "step of the max"], rows))
    write_section("golden_drift", "Golden trajectory: drift from one-ulp differences", body)
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())

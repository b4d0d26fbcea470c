"""Regenerate tests/fixtures/golden_losses.json: the losses of the golden 50-step CPU run.

Run this only when a change is meant to alter the training numerics (a new default, a new
initialisation, a different RNG use), and say so in the commit:

    python scripts/make_golden_losses.py

The run itself is defined in tests/golden_run.py, so the test and this script cannot drift apart.
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from golden_run import GOLDEN_FILE, STEPS, golden_losses, write_golden  # noqa: E402


def main() -> int:
    with tempfile.TemporaryDirectory() as logs:
        losses = golden_losses(logs)
    write_golden(losses)
    print(f"wrote {len(losses)} losses ({STEPS} steps) to {GOLDEN_FILE}: first {losses[0]!r}, last {losses[-1]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

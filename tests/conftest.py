"""Puts the test oracles (open_clip, timm, CLIP_benchmark; installed by scripts/setup.sh with
--no-deps into build/test-oracles) on sys.path for the suite only: they are never part of a user's
environment. Subprocesses the tests start inherit the folder through PYTHONPATH."""

import os
import sys
from pathlib import Path

ORACLES = Path(__file__).resolve().parent.parent / "build" / "test-oracles"

if ORACLES.is_dir() and str(ORACLES) not in sys.path:
    sys.path.insert(0, str(ORACLES))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        part for part in (os.environ.get("PYTHONPATH"), str(ORACLES)) if part)

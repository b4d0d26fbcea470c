"""Test-only entry point: `cliplab.cli.main(argv)`, except that with CLIPLAB_TEST_SLOW_PUBLISH_S set
every checkpoint publish first sleeps that many seconds, which holds a save open long enough for a
test to signal the process during it. Without the variable it is the plain CLI.

    python tests/preemption_launcher.py train --name run --resume latest ...
"""

import functools
import os
import sys
import time

from cliplab.cli import main
from cliplab.train.checkpointing.manager import CheckpointManager


def _slowed(publish, seconds: float):
    @functools.wraps(publish)
    def slow_publish(self, staging, step):
        time.sleep(seconds)
        return publish(self, staging, step)
    return slow_publish


if __name__ == "__main__":
    delay = os.environ.get("CLIPLAB_TEST_SLOW_PUBLISH_S")
    if delay:
        CheckpointManager.publish = _slowed(CheckpointManager.publish, float(delay))
    sys.exit(main(sys.argv[1:]))

"""Test-only torchrun entry point: `cliplab.cli.main(argv)`, except that on the first attempt
(TORCHELASTIC_RESTART_COUNT == 0) the worker of rank CLIPLAB_TEST_KILL_RANK SIGKILLs itself right
after optimiser step CLIPLAB_TEST_KILL_AT_STEP. Without CLIPLAB_TEST_KILL_AT_STEP it is the plain CLI.

    torchrun ... tests/elastic_launcher.py train --name run --resume latest ...
"""

import functools
import os
import signal
import sys

import cliplab.train
from cliplab.cli import main
from cliplab.train import TrainHooks, trainer


def _kill_self_at(kill_step: int):
    def after_step(step, model):
        if step == kill_step:
            os.kill(os.getpid(), signal.SIGKILL)
    return after_step


if __name__ == "__main__":
    kill_step = os.environ.get("CLIPLAB_TEST_KILL_AT_STEP")
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    if kill_step and first_attempt and os.environ.get("RANK") == os.environ.get("CLIPLAB_TEST_KILL_RANK", "0"):
        # `cliplab train` looks `train` up in cliplab.train when it runs.
        cliplab.train.train = functools.partial(trainer.train, hooks=TrainHooks(after_step=_kill_self_at(int(kill_step))))
    sys.exit(main(sys.argv[1:]))

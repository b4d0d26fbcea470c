"""Preemption: SIGTERM, SIGUSR1 or SIGINT stop the run after its current step, with a verified
checkpoint of that step, one line, and the exit status `checkpoint.requeue_exit_code`.

Schedulers warn before they kill: Kubernetes and SLURM send SIGTERM (SLURM's `--signal` can send
SIGUSR1 earlier, to the batch script alone with `B:`), torchrun forwards SIGTERM and SIGINT to
every worker, and a signal relayed by hand may reach one process only. `PreemptionHandler` turns
each of the three signals into a request to stop, on whichever rank it arrives:

1. the handler only records the signal (which one, when); the step in progress goes on;
2. at the next step boundary each rank adds its request (one int per signal) to the counts the
   ranks agree on there anyway (`cliplab.data.skipping.agree_on_step`: the same single all_reduce,
   three ints longer); when any rank was signalled, no rank trains another step. The batches just
   read for the next step are dropped: the data position is the training state's, and reading
   leaves every RNG the run keeps as it was (`data_setup`), so the resume reads them again;
3. `stop` writes the checkpoint of the step reached (unless that step's is written already), has
   the main process verify its manifest, writes `preempted.json` into the run directory (torchrun
   exits 1 whatever its workers return, so a job script that runs it looks there) and says so in
   one line; the trainer returns the `Preemption`, and `cliplab train` exits with its `exit_code`.

A second signal, a second or more after the first, ends the process at once by the signal's default
action, during the save too. The save writes into a staging directory and moves `latest` only once
the checkpoint is complete (`cliplab.train.checkpointing.manager`), so `latest` keeps naming the previous
checkpoint. Within that second a repeat counts as the same request: a worker under torchrun gets
the shell's SIGINT and torchrun's forwarded copy milliseconds apart.

Data-loader workers forked by the process inherit its handlers; in them the handler does nothing,
so a signal to the whole process group (Ctrl-C, SLURM) leaves the workers serving the batches the
main process still reads. Only the main thread can install handlers; from another thread `train`
runs without them.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from cliplab.checkpoint_files.manifest import verify_checkpoint
from cliplab.distributed.agreement import run_on_main
from cliplab.eval.run_layout import PREEMPTED_FILE
from cliplab.train.checkpointing.atomic_files import write_text_atomic
from cliplab.train.checkpointing.checkpointer import Checkpointer
from cliplab.train.state import TrainState

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
REPEAT_WINDOW_S = 1.0


@dataclass(frozen=True)
class Preemption:
    """How a run stopped on a signal. signal: its name ("SIGTERM"); ranks: how many ranks received it
    by the step boundary where they agreed; step: the step the run reached and saved; checkpoint:
    that step's directory (None when no step was trained); exit_code: the status `cliplab train`
    exits with; save_s: seconds from the agreement to the verified checkpoint."""

    signal: str
    ranks: int
    step: int
    checkpoint: str | None
    exit_code: int
    save_s: float


class PreemptionHandler:
    """While entered (a context manager), SIGTERM / SIGUSR1 / SIGINT request a stop instead of
    ending the process; see the module docstring. `votes()` and `agree(summed)` are the two halves
    of the step-boundary agreement; `stop(...)` is the collective that saves and reports."""

    def __init__(self, *, exit_code: int):
        self.exit_code = exit_code
        self.received: signal.Signals | None = None
        self.received_at = 0.0
        self.agreed: tuple[signal.Signals, int] | None = None  # (signal, ranks that received it)
        self._owner = os.getpid()
        self._previous: dict[signal.Signals, object] = {}

    def __enter__(self) -> "PreemptionHandler":
        if threading.current_thread() is threading.main_thread():
            for signum in PREEMPTION_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _on_signal(self, signum: int, frame) -> None:
        if os.getpid() != self._owner:
            return  # a forked data-loader worker: the process that forked it decides
        now = time.monotonic()
        if self.received is None:
            self.received, self.received_at = signal.Signals(signum), now
        elif now - self.received_at >= REPEAT_WINDOW_S:
            signal.signal(signum, signal.SIG_DFL)  # the default action: the process ends here
            os.kill(os.getpid(), signum)

    def votes(self) -> tuple[int, ...]:
        """This rank's vote per signal of PREEMPTION_SIGNALS (1: received), for `agree_on_step`."""
        return tuple(int(self.received == signum) for signum in PREEMPTION_SIGNALS)

    def agree(self, summed: Sequence[int]) -> bool:
        """Whether any rank received a signal (`summed`: every rank's `votes()` summed, the same on
        every rank, so every rank decides alike); remembers the first signal received and by how
        many ranks."""
        for signum, ranks in zip(PREEMPTION_SIGNALS, summed):
            if ranks:
                self.agreed = (signum, int(ranks))
                return True
        return False

    def stop(self, checkpointer: Checkpointer, state: TrainState, run_dir: Path,
             note: Callable[[str], None]) -> Preemption:
        """Save and verify the checkpoint of `state.step` (none before the first step), record the
        preemption in the run directory and say so with `note`. A collective, after `agree`."""
        started = time.perf_counter()
        checkpoint = checkpointer.save_now(state)
        if checkpoint is not None:
            run_on_main(lambda: verify_checkpoint(checkpoint))
        signum, ranks = self.agreed
        preemption = Preemption(signal=signum.name, ranks=ranks, step=state.step,
                                checkpoint=None if checkpoint is None else str(checkpoint),
                                exit_code=self.exit_code, save_s=time.perf_counter() - started)
        run_on_main(lambda: write_text_atomic(run_dir / PREEMPTED_FILE, json.dumps(asdict(preemption), indent=2) + "\n"))
        note(preemption_line(preemption))
        return preemption


def preemption_line(preemption: Preemption) -> str:
    """The run's closing line when a signal stopped it."""
    saved = (f"checkpoint {preemption.checkpoint} written and verified in {preemption.save_s:.1f} s"
             if preemption.checkpoint is not None else "no step was trained, nothing to save")
    received = "1 rank" if preemption.ranks == 1 else f"{preemption.ranks} ranks"
    return (f"preempted: {preemption.signal} (received by {received}) at step {preemption.step}; {saved}; "
            f"exit status {preemption.exit_code}; continue with --resume latest")

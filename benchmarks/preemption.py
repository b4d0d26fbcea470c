"""What preemption handling costs per step, and how long a signalled run takes to stop.

    python benchmarks/preemption.py     # section preemption (about two minutes)

1. The step-boundary agreement, per step: before preemption handling the ranks agreed on a step's
   read with two collectives (`raise_if_any_rank_failed(error)`, then `sum_over_ranks([skipped,
   drawn])`); now with one (`agree_on_step`: failures, the two counts and one vote per preemption
   signal summed in one all_reduce, the error broadcast only when a read failed). A third row times
   the design not taken, the old two plus a separate `any_rank(stop)` all_reduce. Timed side by side,
   interleaved, in one process (the default run, no process group) and on 2 gloo ranks on this
   machine (median of ROUNDS rounds of CALLS calls each).
2. The default run (`cliplab train`, its data workers included) signalled with SIGTERM once it has
   logged SIGNAL_AFTER steps: seconds from the signal to the process's exit (status 3), of which the
   checkpoint write and verification (`preempted.json`'s save_s), next to the run's median step time.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import format_table, write_section  # noqa: E402

CALLS, ROUNDS = 200, 15
SIGNAL_AFTER = 30
BATCH = [{"skipped": 0, "sample_ids": list(range(256))}]


def _agreements():
    from cliplab.data.skipping import agree_on_step, raise_read_failures
    from cliplab.distributed.agreement import any_rank, raise_if_any_rank_failed, sum_over_ranks

    def before():
        raise_if_any_rank_failed(None)
        return sum_over_ranks([0, 256])

    def now():
        counts = agree_on_step(BATCH, None, votes=(0, 0, 0))
        raise_read_failures(counts, None)
        return counts

    def separate_vote():
        before()
        return any_rank(False)

    return {"two collectives (before)": before, "one all_reduce with the votes (now)": now,
            "two collectives + any_rank(stop)": separate_vote}


def _time_agreements(rank: int = 0, world_size: int = 1) -> dict[str, float]:
    """{variant: median microseconds per call}; interleaved rounds, so that load hits all alike."""
    variants = _agreements()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(ROUNDS):
        for name, agree in variants.items():
            start = time.perf_counter()
            for _ in range(CALLS):
                agree()
            samples[name].append((time.perf_counter() - start) / CALLS * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def _default_run_signalled(logs: Path) -> dict[str, float]:
    command = [sys.executable, "-m", "cliplab", "train", "--logs", str(logs), "--name", "default",
               "--log-every-n-steps", "1", "--no-progress-bar"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = logs / "default" / "metrics.jsonl"
    while process.poll() is None:
        if metrics.exists() and metrics.read_text().count('"kind": "train"') >= SIGNAL_AFTER:
            break
        time.sleep(0.01)
    sent = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=600)
    stop_s = time.perf_counter() - sent
    assert process.returncode == 3, err[-2000:]
    record = json.loads((logs / "default" / "preempted.json").read_text())
    steps = [json.loads(line) for line in metrics.read_text().splitlines() if '"kind": "train"' in line]
    return {"stop_s": stop_s, "save_s": record["save_s"], "step": record["step"],
            "step_s": statistics.median(step["step_time_s"] for step in steps[1:])}


def main() -> None:
    from cliplab.distributed.launch import run_on_workers

    load_before = os.getloadavg()[0]
    single = _time_agreements()
    two = run_on_workers(_time_agreements, 2)[0]
    with tempfile.TemporaryDirectory() as directory:
        run = _default_run_signalled(Path(directory))
    base_single, base_two = single["two collectives (before)"], two["two collectives (before)"]
    rows = [[name, f"{single[name]:.1f}", f"{single[name] / base_single:.2f}", f"{two[name]:.0f}",
             f"{two[name] / base_two:.2f}"] for name in single]
    body = format_table(["step-boundary agreement", "1 process, µs/step", "ratio", "2 gloo ranks, µs/step", "ratio"],
                        rows)
    now_single = single["one all_reduce with the votes (now)"]
    body += (f"\n\nThe default run's median step takes {1000 * run['step_s']:.0f} ms; its agreement takes "
             f"{now_single:.1f} µs there ({100 * now_single * 1e-6 / run['step_s']:.4f}% of a step).\n\n")
    body += format_table(["default run, SIGTERM after step " + str(SIGNAL_AFTER), "seconds"], [
        ["signal -> exit (status 3)", f"{run['stop_s']:.2f}"],
        ["  of which: write + verify the checkpoint of step " + str(run["step"]), f"{run['save_s']:.2f}"],
        ["median step", f"{run['step_s']:.3f}"],
    ])
    body += ("\n\nThe rest of signal -> exit is the step in flight, reading the next step's batches (dropped) "
             "and the process's exit (data-loader workers, interpreter). The machine's 1-minute load average was "
             f"{load_before:.1f} at the start and {os.getloadavg()[0]:.1f} at the end (on {os.cpu_count()} cores; "
             "other work shared them): absolute times scale with it, the ratios of the interleaved rows less so.")
    print(body)
    write_section("preemption", "Preemption: per-step agreement cost and time to stop", body)


if __name__ == "__main__":
    main()

"""Wall time of `cliplab --help` and `cliplab train --help`, beside what they cost while building the
parser imported torch.

Run from the repository root: `python benchmarks/cli_startup.py [--rounds 15]`. Writes section
`cli_startup` of BENCHMARKS.md. Each command is a fresh `python` process (this checkout's `src`
first on PYTHONPATH), timed from start to exit; the commands run interleaved, one of each per
round, so that a busy moment of the machine falls on all of them, and the median over the rounds
is reported. The baseline runs the same `train --help` after importing what the parser's tables
imported before they were kept free of torch (`cliplab.data` and `cliplab.train` with everything in
them); `python -c pass` is the interpreter's own start.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import format_table, write_section  # noqa: E402

COMMANDS = {
    "python -c pass (interpreter start)": ["-c", "pass"],
    "cliplab --help": ["-m", "cliplab", "--help"],
    "cliplab train --help": ["-m", "cliplab", "train", "--help"],
    "baseline: train --help after importing cliplab.data and cliplab.train (torch)": [
        "-c", "import cliplab.data.loader, cliplab.train.trainer\nfrom cliplab.cli import main\n"
              "try:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass"],
}


def wall_seconds(arguments: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *arguments], env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    for arguments in COMMANDS.values():  # warm the file cache once
        wall_seconds(arguments, env)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.rounds):
        for name, arguments in COMMANDS.items():
            times[name].append(wall_seconds(arguments, env))
    rows = [[name, f"{statistics.median(values):.3f}", f"{min(values):.3f}", f"{max(values):.3f}"]
            for name, values in times.items()]
    table = format_table(["command", "median s", "min s", "max s"], rows)
    print(table)
    baseline = statistics.median(times[list(COMMANDS)[-1]])
    train_help = statistics.median(times["cliplab train --help"])
    body = (f"{args.rounds} rounds, the commands interleaved (one of each per round), each a fresh process; wall "
            f"time from start to exit. `cliplab train --help` takes {baseline / train_help:.1f}x less time than "
            f"with torch imported as its parser's tables did before. Load average at the start: {load:.1f} on "
            f"{os.cpu_count()} cores (other work was running: the maxima are its, the medians hold).\n\n{table}")
    write_section("cli_startup", "CLI start-up: --help without torch", body)


if __name__ == "__main__":
    main()

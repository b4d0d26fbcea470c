"""Write one benchmark's results into its own section of BENCHMARKS.md.

Each benchmark owns a section delimited by HTML comments, so benchmarks can be rerun one at a time
(or concurrently) without disturbing the others. The header records the command, machine and date.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import platform
import shlex
import sys
from pathlib import Path

import torch

BENCHMARKS_FILE = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
TITLE = "# Benchmarks\n\nEvery figure here was produced by the script named in its section, run on the machine and date given there.\n"


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    device = "CPU only"
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    return (f"{os.cpu_count()} cores ({cpu}), {memory_gib:.0f} GiB, {device}; "
            f"torch {torch.__version__}, Python {platform.python_version()}")


def load_note(before: float, after: float, own_threads: int) -> str:
    """A sentence on the 1-minute load average around a benchmark and what it says of the machine: a
    load within the benchmark's own threads (plus half a core) is a quiet machine; more means other
    jobs shared the cores."""
    cores = os.cpu_count()
    note = f"Load average {before:.1f} before and {after:.1f} after on {cores} cores"
    if max(before, after) <= own_threads + 0.5:
        return note + f" (a quiet machine: the load is the benchmark's own {own_threads} threads)."
    return note + " (other jobs shared the machine; interleaved variants share their load alike)."


def format_table(headers: list[str], rows: list[list[object]]) -> str:
    """A Markdown table; floats are printed as given, so format them before passing."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(section: str, title: str, body: str, command: str | None = None) -> None:
    """Replace (or append) the section named `section` in BENCHMARKS.md."""
    command = command or "python " + " ".join(shlex.quote(arg) for arg in sys.argv)
    date = datetime.date.today().isoformat()
    begin, end = f"<!-- BEGIN {section} -->", f"<!-- END {section} -->"
    block = (f"{begin}\n## {title}\n\nCommand: `{command}`  \nMachine: {machine_description()}  \n"
             f"Date: {date}\n\n{body.strip()}\n{end}")
    BENCHMARKS_FILE.touch()
    with open(BENCHMARKS_FILE, "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        text = handle.read() or TITLE
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            tail = rest.split(end, 1)[1]
            text = head + block + tail
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        handle.seek(0)
        handle.truncate()
        handle.write(text)

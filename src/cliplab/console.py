"""Progress of a long loop, readable on a terminal and in a log file.

`Progress` shows a tqdm bar when its bar stream (stderr) is a terminal (at least MIN_BAR_COLUMNS
wide, where the width can be told) and a bar is wanted; otherwise,
and also whenever stdout is not a terminal (`cliplab train > run.log`), it prints plain lines to
stdout instead: no carriage returns, one complete line at a time, as open_clip's logging does. So a
log file reads line by line, and switching the bar off (`--no-progress-bar`) removes the bar, not
the information.

Who writes the lines: a caller that knows when a line is due (training: every
`log_every_n_steps` steps) passes `line_interval_s=None` and calls `line(text)`; otherwise a line
counting the work done is printed at most every `line_interval_s` seconds, and once at `close()`.

This module imports nothing from cliplab, so every package can use it.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, TextIO

from tqdm import tqdm


MIN_BAR_COLUMNS = 40  # a narrower terminal (some report 0 columns) gets plain lines instead of a bar


def is_terminal(stream: Any) -> bool:
    return hasattr(stream, "isatty") and stream.isatty()


def terminal_columns(stream: Any) -> int | None:
    """The width of the terminal `stream` writes to, or None when it cannot be told."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return None


def can_draw_bar(stream: Any) -> bool:
    """A terminal wide enough for a bar (of unknown width: assumed wide enough)."""
    columns = terminal_columns(stream)
    return is_terminal(stream) and (columns is None or columns >= MIN_BAR_COLUMNS)


def format_duration(seconds: float) -> str:
    """12.3 -> '0:12', 3725 -> '1:02:05' (hours only when there are any)."""
    whole = max(0, int(round(seconds)))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def remaining_seconds(elapsed_s: float, done: int, remaining: int) -> float | None:
    """Time the `remaining` units take at the rate of the `done` ones (None before any is done)."""
    if done <= 0:
        return None
    return elapsed_s / done * remaining


class Progress:
    """`total` units of work (`unit`, e.g. "img"), of which `initial` were done before this process.

    bar: whether a bar is wanted (it is drawn only on a terminal); bar_stream / line_stream default
    to sys.stderr / sys.stdout at construction; clock: seconds, for the rate and the ETA.
    `enabled=False` makes every method a no-op (ranks other than the main one).
    """

    def __init__(self, total: int | None, *, desc: str, unit: str, bar: bool = True, initial: int = 0,
                 line_interval_s: float | None = 10.0, enabled: bool = True, bar_stream: TextIO | None = None,
                 line_stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.line_interval_s, self.clock = line_interval_s, clock
        self.bar_stream = sys.stderr if bar_stream is None else bar_stream
        self.line_stream = sys.stdout if line_stream is None else line_stream
        self.shows_bar = enabled and bar and can_draw_bar(self.bar_stream)
        self.shows_lines = enabled and (not self.shows_bar or not is_terminal(self.line_stream))
        self.done, self.initial = initial, initial
        self.started = self.last_line = clock()
        self._bar = tqdm(total=total, initial=initial, unit=unit, desc=desc, dynamic_ncols=True,
                         file=self.bar_stream, disable=not self.shows_bar)

    @property
    def elapsed_s(self) -> float:
        return self.clock() - self.started

    @property
    def rate(self) -> float:
        """Units per second in this process so far (0.0 before any time has passed)."""
        elapsed = self.elapsed_s
        return (self.done - self.initial) / elapsed if elapsed > 0 else 0.0

    def eta_s(self) -> float | None:
        """Seconds left at this process's rate (None while unknown)."""
        if self.total is None:
            return None
        return remaining_seconds(self.elapsed_s, self.done - self.initial, self.total - self.done)

    def update(self, count: int = 1, **postfix: Any) -> None:
        """`count` more units done; `postfix` (name=value) is shown after the bar."""
        if not self.enabled:
            return
        self.done += count
        if self.shows_bar:
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(count)
        if self.line_interval_s is not None and self.clock() - self.last_line >= self.line_interval_s:
            self.line(self.count_line())

    def count_line(self, *, finished: bool = False) -> str:
        """'images: 512/10000 img (5%), 230 img/s, ETA 0:41' (finished: '..., done in 0:43')."""
        of_total = "" if self.total is None else f"/{self.total}"
        percent = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        eta = self.eta_s()
        if finished:
            tail = f", done in {format_duration(self.elapsed_s)}"
        else:
            tail = "" if eta is None else f", ETA {format_duration(eta)}"
        return f"{self.desc}: {self.done}{of_total} {self.unit}{percent}, {self.rate:.0f} {self.unit}/s{tail}"

    def line(self, text: str) -> None:
        """A plain progress line, printed where lines are shown (not on a terminal showing the bar)."""
        if self.shows_lines:
            print(text, file=self.line_stream, flush=True)
            self.last_line = self.clock()

    def write(self, message: str) -> None:
        """A message always printed to the line stream (above the bar when one is drawn)."""
        if not self.enabled:
            return
        if self.shows_bar:
            self._bar.write(message, file=self.line_stream)
        else:
            print(message, file=self.line_stream, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        if self.line_interval_s is not None and self.done > self.initial:
            self.line(self.count_line(finished=True))
        self._bar.close()

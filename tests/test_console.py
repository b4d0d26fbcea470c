import io

import pytest

from cliplab.console import Progress, format_duration, remaining_seconds


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _progress(bar_stream, line_stream, clock=None, **options):
    return Progress(100, desc="images", unit="img", bar_stream=bar_stream, line_stream=line_stream,
                    clock=clock or FakeClock(), **options)


@pytest.mark.parametrize("seconds, shown", [(0, "0:00"), (12.3, "0:12"), (59.6, "1:00"), (3725, "1:02:05")])
def test_format_duration(seconds, shown):
    assert format_duration(seconds) == shown


def test_remaining_seconds_is_the_rate_so_far():
    assert remaining_seconds(10.0, done=20, remaining=30) == 15.0
    assert remaining_seconds(10.0, done=0, remaining=30) is None


def test_a_log_file_gets_whole_lines_and_no_bar():
    bar_stream, line_stream, clock = io.StringIO(), io.StringIO(), FakeClock()
    progress = _progress(bar_stream, line_stream, clock, line_interval_s=5.0)
    for _ in range(10):
        clock.now += 1.0
        progress.update(10)
    progress.close()
    assert bar_stream.getvalue() == ""
    assert "\r" not in line_stream.getvalue()
    assert line_stream.getvalue().splitlines() == [
        "images: 50/100 img (50%), 10 img/s, ETA 0:05",
        "images: 100/100 img (100%), 10 img/s, ETA 0:00",
        "images: 100/100 img (100%), 10 img/s, done in 0:10",
    ]


def test_a_terminal_gets_the_bar_and_no_lines():
    bar_stream, line_stream = FakeTerminal(), FakeTerminal()
    progress = _progress(bar_stream, line_stream, line_interval_s=0.0)
    progress.update(100)
    progress.write("a note")
    progress.close()
    assert "100/100" in bar_stream.getvalue() and "\r" in bar_stream.getvalue()
    assert line_stream.getvalue().strip() == "a note"


def test_bar_turned_off_on_a_terminal_still_prints_the_lines():
    bar_stream, line_stream = FakeTerminal(), FakeTerminal()
    progress = _progress(bar_stream, line_stream, bar=False, line_interval_s=None)
    progress.update(10)
    progress.line("step 10/100")
    progress.close()
    assert bar_stream.getvalue() == ""
    assert line_stream.getvalue() == "step 10/100\n"


def test_stdout_to_a_file_with_stderr_on_a_terminal_gets_both():
    bar_stream, line_stream = FakeTerminal(), io.StringIO()
    progress = _progress(bar_stream, line_stream, line_interval_s=None)
    progress.update(100)
    progress.line("step 100/100")
    progress.close()
    assert "100/100" in bar_stream.getvalue()
    assert line_stream.getvalue() == "step 100/100\n"


def test_disabled_progress_writes_nothing():
    bar_stream, line_stream = FakeTerminal(), io.StringIO()
    progress = _progress(bar_stream, line_stream, enabled=False, line_interval_s=0.0)
    progress.update(5)
    progress.line("x")
    progress.write("y")
    progress.close()
    assert bar_stream.getvalue() == line_stream.getvalue() == ""


def test_a_terminal_of_zero_columns_gets_the_lines():
    # Before: a pseudo-terminal reporting 0 columns (a fresh pty, `docker exec -t`) showed neither the
    # bar (tqdm draws nothing in 0 columns) nor the lines (a terminal was taken to show the bar).
    import os

    controller, terminal_fd = os.openpty()  # a new pty's window is 0 x 0
    try:
        with os.fdopen(terminal_fd, "w", closefd=False) as terminal:
            assert terminal.isatty() and os.get_terminal_size(terminal.fileno()).columns == 0
            line_stream = io.StringIO()
            progress = _progress(terminal, line_stream, line_interval_s=None)
            progress.update(10)
            progress.line("step 10/100")
            progress.close()
            assert not progress.shows_bar and line_stream.getvalue() == "step 10/100\n"
    finally:
        os.close(controller)
        os.close(terminal_fd)

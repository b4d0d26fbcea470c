import io

from cliplab.train.metrics_log import ProgressBar


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def _draws(stream, steps):
    bar = ProgressBar(total_steps=steps, initial_step=0, enabled=True, stream=stream)
    for _ in range(steps):
        bar.update(loss=1.0, samples_per_s=100.0, epoch=0)
    bar.close()
    return [chunk for chunk in stream.getvalue().replace("\n", "\r").split("\r") if chunk.strip()]


def test_a_log_file_gets_the_first_and_last_draw_only():
    draws = _draws(io.StringIO(), steps=200)
    assert len(draws) == 2
    assert draws[0].startswith("train:   0%") and draws[-1].startswith("train: 100%")
    assert "200/200" in draws[-1] and "loss=1.0000" in draws[-1]


def test_a_terminal_is_redrawn_as_steps_go():
    draws = _draws(FakeTerminal(), steps=3)
    assert len(draws) >= 2 and draws[-1].startswith("train: 100%")


def test_disabled_bar_writes_nothing():
    stream = io.StringIO()
    bar = ProgressBar(total_steps=5, initial_step=0, enabled=False, stream=stream)
    bar.update(loss=1.0, samples_per_s=1.0, epoch=0)
    bar.close()
    assert stream.getvalue() == ""

"""`cliplab.cli.main`: exit statuses decided once, by the type of what a command raised."""

import pytest
import torch

from cliplab.cli import eval_command, main
from cliplab.errors import InvalidInputError, MissingInputError, RunStoppedError, UserError


def _command_raising(monkeypatch, error):
    def evaluate(args):
        raise error
    monkeypatch.setattr(eval_command, "evaluate", evaluate)


def test_a_user_error_is_one_line_with_exit_status_2(monkeypatch, capsys):
    _command_raising(monkeypatch, InvalidInputError("--batch-size must be >= 1, got 0"))
    assert main(["eval", "some/checkpoint"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "cliplab eval: error: --batch-size must be >= 1, got 0\n" and captured.out == ""


def test_a_run_that_stopped_itself_is_one_line_with_exit_status_1(monkeypatch, capsys):
    _command_raising(monkeypatch, RunStoppedError("5 consecutive steps had a non-finite loss"))
    assert main(["eval", "some/checkpoint"]) == 1
    assert capsys.readouterr().err == "cliplab eval: error: 5 consecutive steps had a non-finite loss\n"


def test_a_torch_runtime_error_inside_a_command_is_a_bug_with_its_traceback(monkeypatch, capsys):
    def evaluate(args):
        return torch.zeros(2, 3) @ torch.zeros(2, 3)  # a real shape error raised by torch
    monkeypatch.setattr(eval_command, "evaluate", evaluate)
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        main(["eval", "some/checkpoint"])
    assert "error:" not in capsys.readouterr().err  # not reported as the user's mistake


def test_the_input_errors_are_user_errors_and_keep_their_builtin_base():
    assert issubclass(InvalidInputError, UserError) and issubclass(InvalidInputError, ValueError)
    assert issubclass(MissingInputError, UserError) and issubclass(MissingInputError, FileNotFoundError)
    assert not issubclass(RunStoppedError, UserError)

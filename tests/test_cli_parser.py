"""cli/parser: a command line cliplab cannot read ends with one error line after a one-line usage;
an unknown flag names the closest known ones; --help of any command builds without importing torch."""

import subprocess
import sys

import pytest

from cliplab.cli import COMMAND_MODULES, main


def _error_lines(argv, capsys) -> list[str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err.splitlines()


def test_a_bad_value_is_the_last_line_after_a_short_usage(capsys):
    # Before: `--lr abc` printed the 50-line usage of every flag, then the error.
    assert _error_lines(["train", "--lr", "abc"], capsys) == [
        "usage: cliplab train [--config FILE] [--set KEY=VALUE] [--FLAG VALUE ...]",
        "(`cliplab train --help` lists every option)",
        "cliplab train: error: argument --lr: invalid float value: 'abc'"]
    assert _error_lines(["classify", "model/", "x.png", "--labels", "a,b", "--top-k", "two"], capsys) == [
        "usage: cliplab classify [OPTIONS] CHECKPOINT IMAGE ...",
        "(`cliplab classify --help` lists every option)",
        "cliplab classify: error: argument --top-k: invalid int value: 'two'"]


def test_an_unknown_flag_is_reported_by_its_command_with_the_closest_flag(capsys):
    # Before: the top-level usage and "unrecognized arguments", no suggestion.
    lines = _error_lines(["train", "--batchsize", "8"], capsys)
    assert lines[0].startswith("usage: cliplab train ")
    assert lines[-1] == ("cliplab train: error: unrecognized arguments: --batchsize 8; --batchsize: did you mean "
                         "--batch-size?")
    assert _error_lines(["eval", "run/", "--retreival-data=x.tsv"], capsys)[-1] == (
        "cliplab eval: error: unrecognized arguments: --retreival-data=x.tsv; --retreival-data: did you mean "
        "--retrieval-data?")
    assert _error_lines(["train", "--frobnicate"], capsys)[-1] == (
        "cliplab train: error: unrecognized arguments: --frobnicate")  # nothing close: no guess


@pytest.mark.parametrize("command", ["", *[name.replace("_", "-") for name in COMMAND_MODULES]])
def test_help_imports_no_torch(command):
    argv = [command, "--help"] if command else ["--help"]
    code = ("import sys\nfrom cliplab.cli import main\ntry:\n    main(%r)\nexcept SystemExit as exit:\n"
            "    assert exit.code == 0, exit.code\nprint('torch' in sys.modules, file=sys.stderr)" % argv)
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr.strip() == "False"
    assert "usage: cliplab" in completed.stdout


def test_the_top_level_help_fits_a_screen(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert len(capsys.readouterr().out.splitlines()) <= 40

"""The argument parser every `cliplab` command uses, and how it reports a command line it cannot read.

A mistake ends with one error line, after a short usage: `--lr abc` names the flag and the value;
an unknown flag names the closest known ones ("did you mean --batch-size?"), from the parser of the
command it was given to (argparse alone reports it from the top-level parser, without a suggestion).
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from cliplab.suggestions import closest_names

SUGGESTIONS = 2  # closest flags named for an unknown one
SUGGESTION_CUTOFF = 0.8  # difflib similarity below which a flag is not suggested (--batchsize: 0.95)


class CliParser(argparse.ArgumentParser):
    """argparse's parser (sub-command parsers are of the same class) whose errors read: a one-line
    usage, a pointer to --help, then `<prog>: error: <message>` as the last line; exit status 2."""

    def short_usage(self) -> str:
        """`usage: <prog> [OPTIONS] <positional arguments>`, or the parser's own usage when it sets one."""
        if self.usage is not None:
            return self.format_usage()
        positionals = []
        for action in self._actions:
            if action.option_strings:
                continue
            name = action.metavar or action.dest.upper()
            many = action.nargs in ("+", "*", argparse.REMAINDER, argparse.PARSER)
            positionals.append(f"{name} ..." if many else name)
        return f"usage: {' '.join([self.prog, '[OPTIONS]', *positionals])}\n"

    def error(self, message: str) -> NoReturn:
        self._print_message(self.short_usage(), sys.stderr)
        self.exit(2, f"(`{self.prog} --help` lists every option)\n{self.prog}: error: {message}\n")


def closest_options(unknown: str, parser: argparse.ArgumentParser) -> list[str]:
    """The options of `parser` closest to the unknown `--flag` (or `--flag=value`), closest first."""
    options = [option for action in parser._actions for option in action.option_strings if option.startswith("--")]
    return closest_names(unknown.split("=", 1)[0], options, count=SUGGESTIONS, cutoff=SUGGESTION_CUTOFF)


def unrecognized_message(extras: list[str], parser: argparse.ArgumentParser) -> str:
    """"unrecognized arguments: ..." and, for an unknown --flag, the closest known ones."""
    message = f"unrecognized arguments: {' '.join(extras)}"
    for extra in extras:
        if extra.startswith("--"):
            suggestions = closest_options(extra, parser)
            if suggestions:
                message += f"; {extra.split('=', 1)[0]}: did you mean {' or '.join(suggestions)}?"
    return message

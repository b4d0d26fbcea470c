"""`cliplab` command line: argument parsing only; each sub-command lives in its own module.

A sub-command module exposes `add_parser(subparsers)` (registering its flags and examples) and
`run(args) -> int`. Nothing below the CLI imports from here.

Exit statuses, decided here once for every command by the type of what escaped `run`:
  0  done
  1  a bug (any other exception: it propagates with its traceback), or a run that stopped itself
     (`RunStoppedError`, e.g. too many non-finite steps in a row): one line, no traceback, since
     the message says what happened and what to change
  2  a problem with the user's input (`UserError`): one line `cliplab <command>: error: <message>`,
     no traceback
  3  (`cliplab train`, `--requeue-exit-code`) SIGTERM, SIGUSR1 or SIGINT stopped the run after a
     verified checkpoint of its last step: `--resume latest` continues it
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cliplab.cli.parser import CliParser, unrecognized_message
from cliplab.errors import RunStoppedError, UserError

# Order is the order shown in `cliplab --help`.
COMMAND_MODULES = ("train", "eval", "benchmark", "classify", "embed", "caption", "report", "shards", "export", "wise_ft")

USER_ERROR_EXIT = 2
RUN_STOPPED_EXIT = 1


EPILOG = """\
`cliplab COMMAND --help` shows a command's options and examples. Building no parser imports torch,
so help is immediate.

examples:
  cliplab train                                  # the tiny CLIP on Fashion-MNIST, evaluated at the end
  cliplab train --model ViT-B-32 --pretrained laion2b_s34b_b79k --dataset-type csv --train-data train.tsv
  cliplab eval logs/<run>                        # what the run trained for: zero-shot or retrieval
  cliplab classify logs/<run> shoe.png --labels "sneaker,sandal,bag"
"""


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(prog="cliplab", description="Train, evaluate and use CLIP-family models.", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"cliplab.cli.{name}_command")
        module.add_parser(subparsers)
    return parser


def _command_parser(parser: argparse.ArgumentParser, command: str | None) -> argparse.ArgumentParser:
    """The parser of sub-command `command` (the top-level parser for None)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if extras:
        command_parser = _command_parser(parser, args.command)
        command_parser.error(unrecognized_message(extras, command_parser))
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except (UserError, RunStoppedError) as error:
        print(f"cliplab {args.command}: error: {error}", file=sys.stderr)
        return USER_ERROR_EXIT if isinstance(error, UserError) else RUN_STOPPED_EXIT

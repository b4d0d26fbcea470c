"""`cliplab` command line: argument parsing only; each sub-command lives in its own module.

A sub-command module exposes `add_parser(subparsers)` (registering its flags and examples) and
`run(args) -> int`. Nothing below the CLI imports from here.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Order is the order shown in `cliplab --help`.
COMMAND_MODULES = ("train", "eval", "classify", "embed", "caption", "report", "shards", "export", "wise_ft")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cliplab",
        description="Train, evaluate and use CLIP-family models.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"cliplab.cli.{name}_command")
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(args.run(args) or 0)

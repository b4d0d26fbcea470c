"""The one error type for problems a user can fix, told apart from bugs by type alone.

`UserError` (and every subclass) means: the configuration, a flag, a file or the data the user gave
is not what cliplab can use, and the message says which and what was expected. The command line
catches it once, in `cliplab.cli.main`, and prints one line with exit status 2, no traceback.
Anything else that escapes is a bug and keeps its traceback (exit status 1).

Raise it where user input enters (a flag, a config key, a file, a data reader); name the argument
or the file (and line) and the expectation: `UserError(f"--train-data {path}: expected a CSV file,
found a directory")`. `InvalidInputError` and `MissingInputError` are the same report for code whose
callers catch ValueError or FileNotFoundError (they were raised as those before UserError existed).

`RunStoppedError` is neither a bug nor bad input: a run that stopped itself because going on would
be meaningless (too many non-finite steps in a row). The command line prints its message as one line
and exits with status 1, the status of a failed run.

This module imports nothing, so every package can depend on it.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, fixable by the user; the message is the whole report."""


class InvalidInputError(UserError, ValueError):
    """A value the user gave (a flag, a key, a file's content) that cliplab cannot use."""


class MissingInputError(UserError, FileNotFoundError):
    """A file or directory the user named that does not exist."""


class UnsupportedArchitectureError(UserError):
    """An open_clip, OpenAI or Hugging Face architecture that no registered tower family of
    cliplab's builds (`cliplab.models.families`); the message names the setting and the family."""


class MissingModelFilesError(UserError):
    """Files an architecture needs that are not on this machine (a Hugging Face text model's
    config.json or weights): the message names them and where cliplab looked."""


class RunStoppedError(Exception):
    """A run that stopped itself on purpose; the message says why and what to change."""

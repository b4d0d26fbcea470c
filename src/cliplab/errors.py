"""The one error type for problems a user can fix, told apart from bugs by type alone.

`UserError` (and every subclass) means: the configuration, a flag, a file or the data the user gave
is not what cliplab can use, and the message says which and what was expected. The command line
catches it once, in `cliplab.cli.main`, and prints one line with exit status 2, no traceback.
Anything else that escapes is a bug and keeps its traceback (exit status 1).

Raise it where user input enters (a flag, a config key, a file, a data reader); name the argument
or the file (and line) and the expectation: `UserError(f"--train-data {path}: expected a CSV file,
found a directory")`. This module imports nothing, so every package can depend on it.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, fixable by the user; the message is the whole report."""

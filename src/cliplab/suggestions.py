"""The names closest to one a user mistyped, for error messages ("did you mean ...?"). Standard
library only, so the CLI's parser and every package can use it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest_names(name: str, known: Iterable[str], *, count: int = 5, cutoff: float = 0.0) -> list[str]:
    """Up to `count` names of `known` closest to `name` (difflib's similarity, case-insensitive),
    closest first; none below `cutoff`."""
    by_lower: dict[str, str] = {}
    for candidate in known:
        by_lower.setdefault(candidate.lower(), candidate)
    matches = difflib.get_close_matches(name.lower(), list(by_lower), n=count, cutoff=cutoff)
    return [by_lower[match] for match in matches]

"""`index_entries`: the name -> entry lookup every registry table keeps (tower families, objective
terms, data sources, checkpoint formats), built once when the table is imported."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

Entry = TypeVar("Entry")


def index_entries(entries: Iterable[Entry], key: Callable[[Entry], str], table: str) -> dict[str, Entry]:
    """{key(entry): entry} over `entries`; ValueError naming `table` and the key two entries share."""
    index: dict[str, Entry] = {}
    for entry in entries:
        if key(entry) in index:
            raise ValueError(f"{table}: two entries share {key(entry)!r}")
        index[key(entry)] = entry
    return index

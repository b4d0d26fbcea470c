"""Caption fields that hold several captions: one rule for every reader (CSV/TSV, parquet,
webdataset, benchmark datasets).

A field is one caption (a plain string), or several: a JSON list of strings in a text cell
(`["a dog", "a brown dog"]`), or a list value (a parquet list column, a list in a webdataset
sample's `json`). A text cell is read as a list only when, stripped, it starts with `[` and ends
with `]` and parses as a JSON list; any other text is one caption as written.
"""

from __future__ import annotations

import json
from typing import Any

from cliplab.errors import InvalidInputError


def captions_in_field(value: Any, *, where: str) -> tuple[str, ...]:
    """The captions a caption field holds -> tuple of str (a plain caption: one element, as given).

    where: names the field for the error, e.g. "train.tsv row 12, column 'title'". An empty list, or
    a list with a non-string or blank element, is an InvalidInputError naming it; a plain string is
    returned as it is (blank plain captions are the reader's to reject, as before).
    """
    if isinstance(value, str):
        text = value.strip()
        if not (text.startswith("[") and text.endswith("]")):
            return (value,)
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return (value,)
        if not isinstance(value, list):
            return (text,)
    if not isinstance(value, (list, tuple)):
        raise InvalidInputError(f"{where}: expected a caption or a list of captions, got {type(value).__name__}")
    if not value:
        raise InvalidInputError(f"{where}: the list of captions is empty")
    for position, caption in enumerate(value):
        if not isinstance(caption, str) or not caption.strip():
            raise InvalidInputError(f"{where}: caption {position} of the list must be non-empty text, "
                                    f"got {caption!r}")
    return tuple(value)

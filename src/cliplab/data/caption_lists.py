"""Caption fields that hold several captions: one rule for every reader (CSV/TSV, parquet,
webdataset, benchmark datasets).

A field is one caption (a plain string), or several: a JSON list of strings in a text cell
(`["a dog", "a brown dog"]`), or a list value (a parquet list column, a list in a webdataset
sample's `json`). A text cell is read as a list only when, stripped, it starts with `[` and ends
with `]` and parses as a JSON list; any other text is one caption as written.

Training reads one caption of a sample per epoch (`drawn_caption`): chosen by a hash of (caption
seed, epoch, the sample's key), so the draw is the same on any rank, worker or resume point.
Evaluation reads all of them. A field whose list is empty, or holds a blank or non-string element,
is refused with one line where the data is read whole at start-up (a CSV/TSV manifest,
`captions_in_field` naming its line); for a reader that meets it later (parquet row groups,
webdataset streams) it is a bad sample (`sample_captions`), skipped and counted like an
undecodable image or a blank caption: such data cannot be checked before it is read, and a single
bad row should not stop a run of millions, while the skip threshold still stops one whose every row
is bad (a wrong caption column).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cliplab.data.samples import BadSampleError
from cliplab.data.seeding import mix_seed
from cliplab.errors import InvalidInputError

_CAPTION_SALT = 0xCA97


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


def sample_captions(value: Any, *, source: str) -> tuple[str, ...]:
    """`captions_in_field` for a training or evaluation reader: the captions, stripped; a BadSampleError
    naming `source` for an empty list, a bad element or a blank plain caption (module docstring)."""
    try:
        captions = tuple(caption.strip() for caption in captions_in_field(value, where=source))
    except InvalidInputError as error:
        raise BadSampleError(source, str(error).removeprefix(f"{source}: ")) from None
    if not captions[0]:
        raise BadSampleError(source, "empty caption")
    return captions


def drawn_caption(captions: tuple[str, ...], *, seed: int, epoch: int, key: int) -> str:
    """The caption training reads of a sample with `captions` in `epoch`: one of them, chosen by a hash
    of (seed, epoch, key); key: the sample's own number (a dataset index, `text_key` of its name)."""
    if len(captions) == 1:
        return captions[0]
    return captions[mix_seed(seed, epoch, key, _CAPTION_SALT) % len(captions)]


def text_key(name: str) -> int:
    """A 63-bit number of `name` (a webdataset sample's key), the same in every process (unlike `hash`)."""
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "big") >> 1


def corpus_captions(value: Any) -> list[str]:
    """The non-blank captions of a caption field for a tokenizer's corpus (stripped); none for a field
    that is not text or a list of text."""
    try:
        return [caption.strip() for caption in captions_in_field(value, where="") if caption.strip()]
    except InvalidInputError:
        return []

"""What a dataset hands the loader for one sample, and the errors of the skipping policy.

A map-style dataset exposes `__len__` and `read(index, *, epoch) -> RawSample`. A sample that cannot
be used (missing, truncated or undecodable image, empty caption) raises `BadSampleError`, which the
batch assembler counts and replaces; any other exception is a bug and propagates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from cliplab.errors import UserError


@dataclass(frozen=True)
class RawSample:
    """One decoded sample before preprocessing.

    image: RGB PIL image; caption: non-empty text, the one training reads in this epoch; label: class
    index, or -1 where unknown; source: a name a human can find the sample by (file path, or
    dataset/split/index); captions: every caption the sample has (a caption field holding several,
    `caption_lists`), which evaluation reads; () means just `caption`.
    """

    image: Image.Image
    caption: str
    label: int
    source: str
    captions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.captions:
            object.__setattr__(self, "captions", (self.caption,))


class BadSampleError(Exception):
    """A sample that cannot be used; `source` names it, `reason` says why."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class TooManyBadSamplesError(UserError, RuntimeError):
    """The fraction of skipped samples passed the configured threshold; the message names examples.

    Constructible from a single message so a DataLoader worker can re-raise it in the main process.
    """


class MapDataset(Protocol):
    """The interface the map-style loader needs from a dataset."""

    def __len__(self) -> int: ...

    def read(self, index: int, *, epoch: int) -> RawSample: ...

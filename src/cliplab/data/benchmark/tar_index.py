"""Random access into webdataset tar shards: which member holds what, and reading one member.

A sample is the files of a shard sharing a key, webdataset's rule: the key is the member's path up
to the first dot of its file name, the rest is the extension, lower-cased (`s0000001.webp`,
`s0000001.cls`). Indexing reads the tar headers once (and the contents of the small members asked
for); an image is later read by seeking to its offset, so any worker can read any sample.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

from cliplab.errors import InvalidInputError


@dataclass(frozen=True)
class TarMember:
    """The bytes of one member: `size` bytes at `offset` of `tar`."""

    tar: Path
    offset: int
    size: int

    def read(self) -> bytes:
        with open(self.tar, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read(self.size)
        if len(data) != self.size:
            raise OSError(f"{self.tar} ends inside a member at offset {self.offset}")
        return data


@dataclass(frozen=True)
class TarSample:
    """One sample: its key, its members by extension, and the contents of the members read while
    indexing (`contents`, by extension)."""

    key: str
    members: dict[str, TarMember]
    contents: dict[str, bytes]


def split_key(name: str) -> tuple[str, str]:
    """'dir/s01.seg.png' -> ('dir/s01', 'seg.png'); a name without an extension -> (name, '')."""
    directory, _, file_name = name.rpartition("/")
    stem, dot, extension = file_name.partition(".")
    return (f"{directory}/{stem}" if directory else stem), extension.lower() if dot else ""


def index_tar(path: Path, *, read_extensions: tuple[str, ...]) -> list[TarSample]:
    """The samples of tar `path` in file order; the members whose extension is in
    `read_extensions` are read. InvalidInputError naming the file when it is not a readable tar."""
    samples: dict[str, TarSample] = {}
    try:
        with tarfile.open(path, "r:") as archive:
            for info in archive:
                if not info.isfile():
                    continue
                key, extension = split_key(info.name)
                if not extension or key.rpartition("/")[2].startswith("__"):
                    continue
                sample = samples.setdefault(key, TarSample(key, {}, {}))
                sample.members[extension] = TarMember(path, info.offset_data, info.size)
                if extension in read_extensions:
                    sample.contents[extension] = archive.extractfile(info).read()
    except (tarfile.TarError, OSError) as error:
        raise InvalidInputError(f"{path}: not a readable tar file ({error})") from None
    return list(samples.values())

"""Finding the Fashion-MNIST idx files: a named directory, the Debian package, the cache, a download.

A directory the user names (`--train-data DIR`) is the only place looked in: when it does not exist
or does not hold the split, that is an error naming it (it used to fall back, silently, to another
copy). Without one, sources are tried in order: the directory the Debian package
`dataset-fashion-mnist` installs (/usr/share/datasets/fashion-mnist), and the cache directory
($CLIPLAB_CACHE/fashion-mnist, default ~/.cache/cliplab/fashion-mnist). Where neither holds the
split, the files are downloaded into the cache from the official mirrors and checked against the
MD5 sums published in the Fashion-MNIST README; where that fails too, the error names the three
ways to get the data.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable

from cliplab.errors import MissingInputError

SPLITS = ("train", "test")

# (images file, labels file) per split, as named by the official release.
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

# MD5 of each compressed file, from the table in github.com/zalandoresearch/fashion-mnist README.
# The Debian package recompresses the same data, so its .gz files hash differently; these sums
# apply to downloads only.
OFFICIAL_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}

# The official S3 mirror linked from the README, then the files in the Zalando research repository.
DOWNLOAD_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
CACHE_ENV_VAR = "CLIPLAB_CACHE"

Fetcher = Callable[[str, Path], None]
"""Writes the resource at a URL to a local file path; raises OSError when it cannot."""


class FashionMnistNotFoundError(MissingInputError):
    """No source holds the requested Fashion-MNIST split; the message says how to get it."""


class ChecksumError(OSError):
    """A downloaded file's MD5 differs from the official one."""


def cliplab_cache_root() -> Path:
    """$CLIPLAB_CACHE where the variable is set, else ~/.cache/cliplab."""
    root = os.environ.get(CACHE_ENV_VAR)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "cliplab"


def default_cache_dir() -> Path:
    """$CLIPLAB_CACHE/fashion-mnist where the variable is set, else ~/.cache/cliplab/fashion-mnist."""
    return cliplab_cache_root() / "fashion-mnist"


def urllib_fetch(url: str, destination: Path, timeout_s: float = 60.0) -> None:
    """Download `url` (http, https or file) to `destination` with the standard library."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response, open(destination, "wb") as out:
        shutil.copyfileobj(response, out)


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def split_files_in(directory: Path, split: str) -> tuple[Path, Path] | None:
    """(images, labels) paths in `directory` when both exist, gzip-compressed or not, else None."""
    found = []
    for name in SPLIT_FILES[split]:
        candidates = [directory / name, directory / name.removesuffix(".gz")]
        existing = [path for path in candidates if path.is_file()]
        if not existing:
            return None
        found.append(existing[0])
    return found[0], found[1]


def download_split(split: str, cache_dir: Path, *, fetch: Fetcher = urllib_fetch,
                   mirrors: tuple[str, ...] = DOWNLOAD_MIRRORS,
                   md5: dict[str, str] = OFFICIAL_MD5) -> tuple[Path, Path]:
    """Download the split's two files into `cache_dir`, verifying MD5 sums; returns their paths.

    Each file is written to a temporary name and renamed only after its checksum matched, so an
    interrupted or corrupt download never looks like a cached file. Raises OSError listing every
    mirror's failure when no mirror delivered a verified file.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in SPLIT_FILES[split]:
        target = cache_dir / name
        if not target.is_file():
            _download_verified(name, target, fetch=fetch, mirrors=mirrors, expected_md5=md5[name])
        paths.append(target)
    return paths[0], paths[1]


def _download_verified(name: str, target: Path, *, fetch: Fetcher, mirrors: tuple[str, ...],
                       expected_md5: str) -> None:
    failures = []
    for mirror in mirrors:
        url = mirror + name
        handle, temporary_name = tempfile.mkstemp(prefix=name + ".", suffix=".part", dir=target.parent)
        os.close(handle)
        temporary = Path(temporary_name)
        try:
            fetch(url, temporary)
            actual_md5 = md5_of(temporary)
            if actual_md5 != expected_md5:
                raise ChecksumError(f"MD5 {actual_md5} differs from the official {expected_md5}")
            os.replace(temporary, target)
            return
        except OSError as error:  # URLError, HTTPError, timeouts and ChecksumError are all OSErrors
            failures.append(f"{url}: {error}")
        finally:
            temporary.unlink(missing_ok=True)
    raise OSError("could not download " + name + ":\n    " + "\n    ".join(failures))


def locate_fashion_mnist(split: str, *, data_dir: str | Path | None = None,
                         system_dir: Path = SYSTEM_DIR, cache_dir: Path | None = None,
                         download: bool = True, fetch: Fetcher = urllib_fetch,
                         mirrors: tuple[str, ...] = DOWNLOAD_MIRRORS) -> tuple[Path, Path]:
    """(images, labels) idx paths of `split` ("train" or "test"): those in `data_dir` when one is
    named, else from the first source holding them.

    Raises FashionMnistNotFoundError naming `data_dir` when it does not hold the split; without one,
    naming every place searched, why downloading failed, and the three ways to provide the data.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    images_name, labels_name = SPLIT_FILES[split]
    if data_dir is not None:
        return _split_files_in_named(Path(data_dir).expanduser(), split)
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    directories = [system_dir, cache_dir]
    for directory in directories:
        found = split_files_in(directory, split)
        if found is not None:
            return found
    download_problem = "downloading is disabled"
    if download:
        try:
            return download_split(split, cache_dir, fetch=fetch, mirrors=mirrors)
        except OSError as error:
            download_problem = f"download failed: {error}"
    searched = "\n".join(f"  - {directory}" for directory in directories)
    raise FashionMnistNotFoundError(
        f"Fashion-MNIST {split} split ({images_name}, {labels_name}) not found. Searched:\n"
        f"{searched}\nand {download_problem}.\n"
        "Get the data in one of three ways:\n"
        "  1. pass a directory holding the idx files: --train-data DIR\n"
        f"  2. install the Debian package: apt-get install dataset-fashion-mnist (files land in "
        f"{system_dir})\n"
        f"  3. put the files in the cache directory {cache_dir} (move it with ${CACHE_ENV_VAR}), "
        f"or let cliplab download them there from {mirrors[0] if mirrors else 'the official mirror'}"
    )


def _split_files_in_named(directory: Path, split: str) -> tuple[Path, Path]:
    images_name, labels_name = SPLIT_FILES[split]
    if not directory.is_dir():
        raise FashionMnistNotFoundError(
            f"Fashion-MNIST directory {directory} (--train-data or --val-data) does not exist; name a directory "
            "holding the idx files, or leave the flag out to use the system copy or the cache")
    found = split_files_in(directory, split)
    if found is None:
        raise FashionMnistNotFoundError(
            f"Fashion-MNIST directory {directory} (--train-data or --val-data) does not hold the {split} split "
            f"({images_name} and {labels_name}, gzip-compressed or not)")
    return found

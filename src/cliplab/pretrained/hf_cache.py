"""The Hugging Face Hub cache: where a repository's files lie once downloaded, and how to get them.

The cache is huggingface_hub's layout (`models--org--name/snapshots/REVISION/...` under the hub cache
directory). Its location is read from the environment at each call, not at import, so `HF_HOME` or
`HF_HUB_CACHE` set by a test or a job script after start-up is honoured:
`HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
`~/.cache/huggingface/hub`. Every lookup tries the cache first, so a populated cache works offline;
`HF_HUB_OFFLINE` (read at each call too: huggingface_hub reads it once, at its import) stops there.
"""

from __future__ import annotations

import os
from pathlib import Path

from cliplab.errors import UserError


def hub_cache_dir() -> Path:
    """The hub cache directory the environment names now (it need not exist)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return cache_home / "huggingface" / "hub"


class OfflineError(Exception):
    """The network is not to be used: HF_HUB_OFFLINE is set."""


def _check_online() -> None:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "on", "yes", "true"):
        raise OfflineError("HF_HUB_OFFLINE is set")


def check_repo_id(repo_id: str, *, where: str) -> str:
    """`org/name` or raise a UserError naming `where`."""
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise UserError(f"{where}: expected a Hugging Face repository id org/name, got {repo_id!r}")
    return repo_id


def cached_file(repo_id: str, filename: str, *, revision: str | None = None) -> Path | None:
    """The cached copy of `filename` of `repo_id`, or None when the cache does not hold it. Never the
    network."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=hub_cache_dir(), revision=revision)
    return Path(found) if isinstance(found, str) else None


def cached_repo_dir(repo_id: str, filenames: tuple[str, ...]) -> Path | None:
    """The cached snapshot directory of `repo_id` that holds the first of `filenames` the cache has
    (the files downloaded with it lie beside it), or None: not cached, or not a repository id at all
    (a local path, say). Never the network."""
    for filename in filenames:
        try:
            found = cached_file(repo_id, filename)
        except ValueError:  # huggingface_hub's HFValidationError: the name is no repository id
            return None
        if found is not None:
            return found.parent
    return None


def snapshot_dir(repo_id: str, *, where: str, allow_patterns: list[str] | None = None,
                 revision: str | None = None) -> Path:
    """The local directory of `repo_id`'s files: from the cache when it holds them, else downloaded
    into it. Neither possible: one UserError naming the repository and the cache directory."""
    from huggingface_hub import snapshot_download

    check_repo_id(repo_id, where=where)
    cache = hub_cache_dir()
    arguments = dict(cache_dir=cache, allow_patterns=allow_patterns, revision=revision)
    try:
        return Path(snapshot_download(repo_id, local_files_only=True, **arguments))
    except Exception:  # not cached (or only partly): try the network below
        pass
    try:
        _check_online()
        return Path(snapshot_download(repo_id, **arguments))
    except Exception as error:  # network, authorisation and cache errors have no common base class
        raise _unavailable(where, f"Hugging Face repository {repo_id} is not in the cache {cache}", repo_id,
                           error) from error


def _unavailable(where: str, absent: str, repo_id: str, error: Exception) -> UserError:
    """The one line for files neither cached nor downloadable: what is absent, why the download
    failed, how to fill the cache by hand."""
    detail = str(error).splitlines()[0] if str(error) else ""
    return UserError(f"{where}: {absent} and could not be downloaded ({type(error).__name__}"
                     f"{': ' + detail if detail else ''}); with no network, put its files there (huggingface-cli "
                     f"download {repo_id} on a connected machine, then copy the cache) or pass a local path")


def repo_file(repo_id: str, filenames: tuple[str, ...], *, where: str, revision: str | None = None) -> Path:
    """The local copy of the first of `filenames` that `repo_id` has: any cached one first (offline),
    else downloaded into the cache, trying them in order. Neither possible: one UserError naming the
    repository, the files and the cache directory."""
    from huggingface_hub import hf_hub_download

    check_repo_id(repo_id, where=where)
    for filename in filenames:
        found = cached_file(repo_id, filename, revision=revision)
        if found is not None:
            return found
    cache = hub_cache_dir()
    error: Exception | None = None
    for filename in filenames:
        try:
            _check_online()
            return Path(hf_hub_download(repo_id, filename, cache_dir=cache, revision=revision))
        except OfflineError as failure:
            error = failure
            break
        except Exception as failure:  # network, authorisation, missing-file and cache errors share no base class
            error = failure
    raise _unavailable(where, f"Hugging Face repository {repo_id} has none of {', '.join(filenames)} in the "
                       f"cache {cache}", repo_id, error) from error

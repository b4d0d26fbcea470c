"""Files an attacker could put in a checkpoint, for the tests that check that reading them runs
nothing (RELIABILITY 15): a pickle whose `__reduce__` would create a marker file, written in place
of a file or of one value stored in DCP shards, and the manifest recomputed afterwards as anyone
can (a manifest is not a signature)."""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
from pathlib import Path

import torch

from cliplab.checkpoint_files.manifest import MANIFEST_FILE, build_manifest, read_manifest


class RunsCode:
    """Unpickling it runs `touch marker` (what an attacker's payload would do instead)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def replace_with_pickle(path: Path, marker: Path) -> None:
    """`path` becomes a code-running pickle: torch.save's format for a `.pt` file, plain pickle else."""
    if path.suffix == ".pt":
        torch.save({"train_state": RunsCode(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(RunsCode(marker)))


def store_instead(shards: Path, fqn: str, marker: Path) -> Path:
    """Entry `fqn` of the DCP directory `shards` re-stored as torch.save of a code-running object:
    appended to its shard file, the index pointed at it (what DCP would then unpickle). Returns the
    shard file."""
    with open(shards / ".metadata", "rb") as handle:
        metadata = pickle.load(handle)  # the test's own, trusted file
    key = next(key for key in metadata.storage_data if key.fqn == fqn)
    info = metadata.storage_data[key]
    buffer = io.BytesIO()
    torch.save(RunsCode(marker), buffer)
    with open(shards / info.relative_path, "ab") as handle:
        offset = handle.tell()
        handle.write(buffer.getvalue())
    metadata.storage_data[key] = dataclasses.replace(info, offset=offset, length=len(buffer.getvalue()))
    with open(shards / ".metadata", "wb") as handle:
        pickle.dump(metadata, handle)
    return shards / info.relative_path


def republish(step_dir: Path) -> None:
    """Recompute the manifest of `step_dir` over its files as they are now (same step and run id)."""
    written = read_manifest(step_dir)
    (step_dir / MANIFEST_FILE).write_text(build_manifest(step_dir, step=written.step, run_id=written.run_id).to_json())

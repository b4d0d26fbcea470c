"""The model in a sharded (DCP) training checkpoint, read whole in one process, no process group.

An FSDP2 run's step directory (`cliplab.train.checkpointing.dcp`) holds the model config and the
tokenizer as a bundle does, and its weights in the DCP directory `shards/`, under the keys
`model.<name>` (`cliplab.train.checkpointing.dcp_state`). `DcpModelReader` reads those entries from DCP's
metadata and files with one DCP load in this process (no process group), which assembles each
tensor from the shards of every rank that wrote it; the optimiser entries beside them are never
read. Both go through `cliplab.pretrained.dcp_files`, which runs nothing the files contain and
bounds the tensors the index declares by the size of the shard files before any is allocated.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from cliplab.errors import UserError
from cliplab.file_names import DCP_METADATA_FILE, DCP_SHARDS_DIR

MODEL_PREFIX = "model."


def is_sharded_checkpoint(path: Path) -> bool:
    """A step directory whose weights are a complete DCP directory `shards/`."""
    return (path / DCP_SHARDS_DIR / DCP_METADATA_FILE).is_file()


class DcpModelReader:
    """The model tensors of the DCP directory `directory`: `shapes` (name -> a meta tensor of the
    stored shape and dtype, names as in a bundle) and `read(name)` (the whole tensor, on the CPU).
    prefix: the section read, "model." (the model) or "ema." (the EMA of its trained tensors,
    `cliplab.pretrained.ema_weights`); required: a section without a tensor is an error (else the
    reader is empty).

    A 0-d parameter that FSDP2 held as a 1-element vector is stored (and read) with shape [1];
    `check_state_dict` accepts it and the loader reshapes it to the model's 0-d."""

    def __init__(self, directory: Path, *, prefix: str = MODEL_PREFIX, required: bool = True):
        from torch.distributed.checkpoint.metadata import TensorStorageMetadata  # imported when used: slow to import

        from cliplab.pretrained.dcp_files import read_dcp_metadata

        self.directory, self.prefix = directory, prefix
        metadata = read_dcp_metadata(directory)
        entries = {key[len(prefix):]: item for key, item in metadata.state_dict_metadata.items()
                   if key.startswith(prefix) and isinstance(item, TensorStorageMetadata)}
        if not entries and required:
            raise UserError(f"{directory}: the DCP directory holds no {prefix}* tensors; expected a cliplab "
                            "sharded training checkpoint")
        self.shapes = {name: torch.empty(item.size, dtype=item.properties.dtype, device="meta")
                       for name, item in entries.items()}
        self._loaded: dict[str, torch.Tensor] | None = None

    def read(self, name: str) -> torch.Tensor:
        """The whole tensor `name`. The first call reads every tensor of the section in one pass over
        the files (one DCP load); each is handed out once."""
        if self._loaded is None:
            from cliplab.pretrained.dcp_files import load_dcp

            prefix = self.prefix
            state = {prefix + key: torch.empty(meta.shape, dtype=meta.dtype) for key, meta in self.shapes.items()}
            with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
                warnings.filterwarnings("ignore", message="torch.distributed is disabled")
                load_dcp(state, self.directory, no_dist=True)
            self._loaded = {key[len(prefix):]: value for key, value in state.items()}
        return self._loaded.pop(name)

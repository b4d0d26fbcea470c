"""The EMA weights a training checkpoint may hold beside its model (`cliplab train --ema-decay`).

A run with an EMA (`cliplab.train.step.ema`) averages the tensors it trains; the rest of the model (what
is frozen, the buffers) is the model's own. Its checkpoints hold the averages:
    ema.safetensors     a single-file checkpoint: the averaged tensors under their state-dict names
    shards/ ema.<name>  an FSDP2 checkpoint: the same, sharded like the parameters, in its DCP shards
The model with the EMA weights is the checkpoint's model with those tensors in place (`EmaOverlay`):
what `cliplab.load(run, ema=True)` and `cliplab export --ema` give.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cliplab.errors import UserError
from cliplab.file_names import DCP_SHARDS_DIR
from cliplab.pretrained.dcp_reader import DcpModelReader, is_sharded_checkpoint
from cliplab.pretrained.weight_files import SafetensorsReader

EMA_WEIGHTS_FILE = "ema.safetensors"
EMA_PREFIX = "ema."


class EmaOverlay:
    """A reader (`shapes`, `read(name)`) of the model `base` reads with the entries `ema` holds in
    place of its own; an EMA entry the model lacks, or of another shape, is refused by name."""

    def __init__(self, base: Any, ema: Any, source: str):
        foreign = sorted(name for name in ema.shapes if name not in base.shapes
                         or ema.shapes[name].numel() != base.shapes[name].numel())
        if foreign:
            raise UserError(f"{source}: EMA tensors {foreign[:5]} are not tensors of the checkpoint's model")
        self.base, self.ema = base, ema
        self.shapes = base.shapes

    def read(self, name: str) -> torch.Tensor:
        return (self.ema if name in self.ema.shapes else self.base).read(name)


def ema_reader(directory: Path, base: Any) -> EmaOverlay:
    """The reader of checkpoint `directory`'s model with its EMA weights (`base`: the reader of its
    model); UserError naming the directory when it holds none."""
    if (directory / EMA_WEIGHTS_FILE).is_file():
        return EmaOverlay(base, SafetensorsReader(directory / EMA_WEIGHTS_FILE), str(directory / EMA_WEIGHTS_FILE))
    sharded = is_sharded_checkpoint(directory)
    ema = DcpModelReader(directory / DCP_SHARDS_DIR, prefix=EMA_PREFIX, required=False) if sharded else None
    if ema is None or not ema.shapes:
        raise UserError(f"{directory} holds no EMA weights: only checkpoints of a run trained with --ema-decay "
                        "(ema.decay) have them")
    return EmaOverlay(base, ema, str(directory / DCP_SHARDS_DIR))

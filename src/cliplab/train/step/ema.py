"""An exponential moving average of the trained weights (the `ema` section, --ema-decay).

After every optimiser step that was taken (a skipped non-finite step changes no weight and is not
averaged), each trained tensor w updates its average a in fp32:

    a <- a + (1 - d_t) (w - a)      (= d_t a + (1 - d_t) w, as torch.lerp computes it)
    d_t = decay * min(1, t / warmup)  at optimiser step t (1-based), d_t = decay without a warmup

The averages start as the trained tensors' values when the run starts, and cover exactly the
tensors that train (with LoRA, the adapters): what is frozen, and the buffers, are the model's own,
so the EMA model is the model with the averages in place (`cliplab.pretrained.ema_weights`). They
are kept on the model's device, or on the CPU with `ema.cpu`. Under FSDP2 each rank keeps the
average of its own shard of each parameter: the EMA is sharded like the parameters.

Checkpoints: a single-file checkpoint holds `ema.safetensors` (the averages under their state-dict
names, written by the main process: every rank of a DDP run holds the same averages); an FSDP2
checkpoint holds them as the `ema.<name>` entries of its DCP shards, each rank writing its own.
Both resume exactly. Evaluation: `whole_averages` (a collective under FSDP2) gives the main
process every average whole, and `weights_swapped` puts them into a whole model for as long as the
evaluation of the EMA runs.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Mapping

import torch
from safetensors.torch import save_file
from torch import nn
from torch.distributed.tensor import DTensor

from cliplab.pretrained.ema_weights import EMA_WEIGHTS_FILE
from cliplab.pretrained.weight_files import SafetensorsReader
from cliplab.train.config import EmaConfig
from cliplab.train.parallel.fsdp import canonical_name, is_held_scalar
from cliplab.train.parallel.fsdp_state import rows_of, shard_value


def ema_decay(step: int, config: EmaConfig) -> float:
    """d_t, the decay of the update after optimiser step `step` (1-based; see the module docstring)."""
    if config.warmup == 0:
        return config.decay
    return config.decay * min(1.0, step / config.warmup)


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


class WeightEma:
    """The averages of the trained parameters of `model` (the cliplab model, whole or sharded), by
    their state-dict names; see the module docstring."""

    def __init__(self, model: nn.Module, config: EmaConfig):
        self.config = config
        self.parameters = {canonical_name(name): (name, parameter) for name, parameter in model.named_parameters()
                           if parameter.requires_grad}
        self.averages = {name: self._copy_of(parameter) for name, (_, parameter) in self.parameters.items()}

    def describe(self) -> str:
        """The start-up line of the EMA."""
        config, values = self.config, sum(average.numel() for average in self.averages.values())
        warmup = f", decay warmed up over {config.warmup} steps" if config.warmup else ""
        where = "the CPU" if config.cpu else "the device"
        return (f"EMA of the weights: decay {config.decay:g}{warmup}; {len(self.averages)} tensors ({values:,} "
                f"values on this rank) in fp32 on {where}, evaluated beside the model (ema/ metrics)")

    def _copy_of(self, parameter: torch.Tensor) -> torch.Tensor:
        local = _local(parameter.detach())
        device = torch.device("cpu") if self.config.cpu else local.device
        return local.to(device=device, dtype=torch.float32, copy=True)

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Average in the weights of optimiser step `step` (1-based)."""
        weight = 1.0 - ema_decay(step, self.config)
        for name, (_, parameter) in self.parameters.items():
            average = self.averages[name]
            average.lerp_(_local(parameter.detach()).to(device=average.device, dtype=torch.float32), weight)

    def save(self, directory: Path) -> None:
        """`ema.safetensors` in checkpoint `directory` (unsharded averages; main process)."""
        state = {name: average.detach().cpu().contiguous() for name, average in self.averages.items()}
        save_file(state, str(directory / EMA_WEIGHTS_FILE), metadata={"format": "pt"})

    @torch.no_grad()
    def load(self, directory: Path) -> bool:
        """The averages from checkpoint `directory`'s `ema.safetensors` (this rank's rows of each,
        under FSDP2); False when it has none (a run that resumes with a new EMA starts it from the
        resumed weights)."""
        path = directory / EMA_WEIGHTS_FILE
        if not path.is_file():
            return False
        reader = SafetensorsReader(path)
        missing = sorted(set(self.averages) - set(reader.shapes))
        if missing:
            raise ValueError(f"{path} lacks the averages of {missing[:5]}")
        for name, (live_name, parameter) in self.parameters.items():
            source = rows_of(lambda _, name=name: reader.read(name))
            value = shard_value(live_name, parameter, source) if isinstance(parameter, DTensor) else source(name, None)
            self.averages[name].copy_(value.reshape(self.averages[name].shape))
        return True

    def sharded_state(self) -> dict[str, DTensor]:
        """The averages as DTensors laid out like their parameters (FSDP2), to save into or load from
        DCP shards; `take_sharded_state` copies loaded values back."""
        return {name: self._as_dtensor(name) for name in self.parameters}

    def _as_dtensor(self, name: str) -> DTensor:
        _, parameter = self.parameters[name]
        local = self.averages[name].to(_local(parameter).device)
        return DTensor.from_local(local, parameter.device_mesh, parameter.placements, run_check=False,
                                  shape=parameter.shape, stride=parameter.stride())

    @torch.no_grad()
    def take_sharded_state(self, state: Mapping[str, DTensor]) -> None:
        """Keep the values `state` (from `sharded_state`, loaded in place) holds."""
        for name, value in state.items():
            average = self.averages[name]
            local = value.to_local()
            if local.data_ptr() != average.data_ptr():
                average.copy_(local)

    def whole_averages(self, *, keep: bool) -> dict[str, torch.Tensor] | None:
        """Every average whole, on the CPU, shaped as the unsharded model's tensor, where `keep`
        (None elsewhere). Under FSDP2 a collective: every rank calls it, in the same order."""
        whole = {}
        for name, (live_name, parameter) in self.parameters.items():
            average = self.averages[name]
            if isinstance(parameter, DTensor):
                average = self._as_dtensor(name).full_tensor()
                if is_held_scalar(live_name):
                    average = average.reshape(())
            if keep:
                whole[name] = average.detach().cpu()
        return whole if keep else None


@contextlib.contextmanager
def weights_swapped(model: nn.Module, values: Mapping[str, torch.Tensor]) -> Iterator[nn.Module]:
    """`model` (whole) with `values` (state-dict name -> tensor) in place of its parameters for the
    duration of the context; the parameters are restored bit for bit after it."""
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        saved = {name: parameters[name].detach().clone() for name in values}
        for name, value in values.items():
            parameters[name].copy_(value.reshape(parameters[name].shape))
    try:
        yield model
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                parameters[name].copy_(value)

"""Sharded training state in a DCP directory: every rank writes and reads only its own shards.

The directory is `torch.distributed.checkpoint`'s (`.metadata` plus one `__<rank>_0.distcp` file
per writing rank). Its keys (DCP joins nested dict keys with dots):
    model.<name>          the CLIP model's parameters, buffers and extra state
    objectives.<name>     the x-clip objective heads' (only when the run has them)
    optimizer.state.<parameter name>.<exp_avg | exp_avg_sq | step>, optimizer.param_groups
    <section>.<name>      tensors the caller adds as `extra` sections (the EMA's averages, `ema.<name>`,
                          DTensors laid out like their parameters: `cliplab.train.step.ema`)
Names are the unsharded ones: `rename` maps a name of the sharded module to it (FSDP2's 1-element
holder of a 0-d parameter back to the parameter's own name, `cliplab.train.parallel.fsdp`); shapes are
the sharded module's global shapes (a held 0-d parameter is stored as [1]; the offline reader,
`cliplab.pretrained.dcp_reader`, gives it back 0-d).

The state dicts come from `get_state_dict` and go back through `set_state_dict`
(torch.distributed.checkpoint.state_dict) in their sharded form: a rank holds only its DTensor
shards, never the whole model or optimiser state, while saving or loading. DCP records every
shard by its global offsets, so a directory written by N ranks loads into M ranks for any M (each
rank reads the rows its own shards cover), and into one process with no process group.

`save_sharded` and `load_sharded` are collectives under a process group: every rank calls them
with the same directory, in the same order. DCP writes the directory's `.metadata` on the
coordinator after every rank's shards are written, so a directory without it is incomplete.
Loading runs nothing the files contain (`cliplab.pretrained.dcp_files.load_dcp`): a hostile or
damaged `.metadata` or shard file fails every rank in one line naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed import ProcessGroup
from torch.distributed.checkpoint import DefaultSavePlanner
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from cliplab.pretrained.dcp_files import load_dcp

MODEL_KEY, OBJECTIVES_KEY, OPTIMIZER_KEY = "model", "objectives", "optimizer"
_GROUP_NAME_LISTS = ("params", "param_names")  # the parameter names a param group lists


def _identity(name: str) -> str:
    return name


def _section_of(name: str, with_objectives: bool) -> tuple[str, str]:
    """(section, name within it) of a name of the trainable module's state dict."""
    if with_objectives:
        section, _, rest = name.partition(".")
        return section, rest
    return MODEL_KEY, name


def _rename_optimizer(state: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """An optimiser state dict keyed by parameter names (`get_state_dict`'s) with every name mapped."""
    groups = [{**group, **{key: [names[name] for name in group[key]]
                           for key in _GROUP_NAME_LISTS if key in group}}
              for group in state["param_groups"]]
    return {"state": {names[name]: values for name, values in state["state"].items()}, "param_groups": groups}


class _Layout:
    """The DCP sections of one trainable module and its optimiser (and `extra` sections, saved and
    loaded in place as they are), and the way back."""

    def __init__(self, trainable: nn.Module, optimizer: torch.optim.Optimizer, rename: Callable[[str], str],
                 extra: Mapping[str, dict[str, Any]] | None = None):
        self.trainable, self.optimizer = trainable, optimizer
        self.with_objectives = isinstance(getattr(trainable, OBJECTIVES_KEY, None), nn.Module)
        model_state, optimizer_state = get_state_dict(trainable, optimizer)
        self.names = {name: rename(name) for name in model_state}
        self.names.update({name: rename(name) for name in optimizer_state["state"]})
        for group in optimizer_state["param_groups"]:
            for key in _GROUP_NAME_LISTS:
                self.names.update({name: rename(name) for name in group.get(key, ())})
        self.live_names = {renamed: name for name, renamed in self.names.items()}
        self.sections = {MODEL_KEY: {}}
        if self.with_objectives:
            self.sections[OBJECTIVES_KEY] = {}
        for name, value in model_state.items():
            section, inner = _section_of(self.names[name], self.with_objectives)
            self.sections[section][inner] = value
        self.sections[OPTIMIZER_KEY] = _rename_optimizer(optimizer_state, self.names)
        self.sections.update(extra or {})

    def restore(self) -> None:
        """Give the (loaded) sections back to the module and optimiser under their live names."""
        model_state = {}
        for section, values in self.sections.items():
            if section not in (MODEL_KEY, OBJECTIVES_KEY):
                continue
            prefix = f"{section}." if self.with_objectives else ""
            model_state.update({self.live_names[prefix + name]: value for name, value in values.items()})
        optimizer_state = _rename_optimizer(self.sections[OPTIMIZER_KEY], self.live_names)
        set_state_dict(self.trainable, self.optimizer, model_state_dict=model_state, optim_state_dict=optimizer_state)


def save_sharded(directory: str | Path, trainable: nn.Module, optimizer: torch.optim.Optimizer, *,
                 rename: Callable[[str], str] = _identity, process_group: ProcessGroup | None = None,
                 extra: Mapping[str, dict[str, Any]] | None = None) -> None:
    """Write this rank's shards of `trainable` (the model, or the model with objective heads under
    `.model` / `.objectives`), of `optimizer` and of the `extra` sections into the DCP directory
    `directory` (created). process_group: the ranks that write (default: all), the ranks
    `trainable` is sharded over."""
    layout = _Layout(trainable, optimizer, rename, extra)
    # A replicated tensor (a buffer, such as BatchNorm's running statistics, which each rank updates
    # with its own batches) is written from rank 0, as a DDP run's checkpoint holds rank 0's; DCP's
    # default takes each from whichever rank balances the writes, which could mix ranks.
    dcp.save(layout.sections, checkpoint_id=Path(directory), process_group=process_group,
             planner=DefaultSavePlanner(dedup_save_to_lowest_rank=True))


def load_sharded(directory: str | Path, trainable: nn.Module, optimizer: torch.optim.Optimizer, *,
                 rename: Callable[[str], str] = _identity, process_group: ProcessGroup | None = None,
                 extra: Mapping[str, dict[str, Any]] | None = None) -> None:
    """Load this rank's shards of `trainable` and `optimizer` from the DCP directory `directory`,
    written by any number of ranks (`rename` as it was saved with), and the `extra` sections' values
    into their tensors in place. Every entry must be there."""
    layout = _Layout(trainable, optimizer, rename, extra)
    load_dcp(layout.sections, Path(directory), process_group=process_group)
    layout.restore()

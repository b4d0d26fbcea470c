"""`cliplab train --dry-run`: the run's model and optimiser, built as training builds them, described.

The model (pretrained weights, locked towers, LoRA adapters) is built on the CPU with the run's seed,
and the AdamW parameter groups formed over it (`param_groups`): one line each, with its lr scale,
weight decay, tensors and layers. Nothing is trained, no run directory is made, no data is read.
The x-clip objective heads of a run with objectives are not built here (they train at lr x1 with
weight decay `wd`, in the groups of scale 1).
"""

from __future__ import annotations

import torch

from cliplab.train.config import TrainConfig
from cliplab.train.setup.model import build_training_model, describe_model
from cliplab.train.setup.model_plan import plan_model
from cliplab.train.step.optim import build_optimizer, describe_optimizer
from cliplab.train.step.param_groups import describe_parameter_groups


def dry_run(config: TrainConfig) -> list[str]:
    """The lines `cliplab train --dry-run` prints for `config`."""
    torch.manual_seed(config.loop.seed)
    plan = None if config.model.pretrained else plan_model(config.model, config.data.dataset_type)
    built = build_training_model(config.model, torch.device("cpu"), plan=plan, lora=config.lora)
    optimizer = build_optimizer(built.model, config.optim)
    groups = [group for group in optimizer.param_groups if group["params"]]
    return (["dry run: nothing is trained or written"] + describe_model(built)
            + [describe_optimizer(optimizer, config.optim)]
            + ["  " + line for line in describe_parameter_groups(groups, config.optim.lr)])

"""LoRA in a run: the `lora` section made into peft adapters on the run's model, and what then trains.

The adapters go on after the towers are locked (`setup.model`): peft freezes every weight of the
model but the adapters; the parts outside the adapted towers (the tower LoRA leaves alone under
--lora-image-only / --lora-text-only, the logit scale and bias, a CoCa decoder) then train again or
stay frozen exactly as --lock-* left them. An adapted tower's own weights, its projection included,
stay frozen. The pairs are drawn from the global generator in module order (peft's initialisation),
so a run's initial adapters depend on its seed only, and FSDP2's shard-by-shard build replays them.
"""

from __future__ import annotations

from torch import nn

from cliplab.models.lora import TOWERS, LoraSpec, add_lora, is_adapter_name, target_modules
from cliplab.train.config import ConfigError, LoraConfig

PROJECTIONS = {"vision": "image_projection", "text": "text_projection"}


def lora_spec(model: nn.Module, config: LoraConfig) -> LoraSpec:
    """The adapters `config` asks for on `model` (its layers resolved); ConfigError naming
    lora.targets when a target names no layer of the adapted towers."""
    try:
        modules = target_modules(model, config.sides, config.targets)
    except ValueError as error:
        raise ConfigError("lora.targets", config.targets, f"does not fit the model: {error}") from None
    return LoraSpec(rank=config.rank, alpha=float(config.rank if config.alpha is None else config.alpha),
                    dropout=float(config.dropout), modules=modules)


def adapt_for_training(model: nn.Module, config: LoraConfig) -> LoraSpec | None:
    """Add the adapters `config` asks for to `model` in place (none when LoRA is off) and set what
    trains (see the module docstring); returns them."""
    if not config.enabled:
        return None
    spec = lora_spec(model, config)
    trained_before = {name: parameter.requires_grad for name, parameter in model.named_parameters()}
    add_lora(model, spec)
    adapted = tuple(f"{part}." for side in config.sides for part in (TOWERS[side], PROJECTIONS[side]))
    for name, parameter in model.named_parameters():
        if not is_adapter_name(name) and not name.startswith(adapted):
            parameter.requires_grad_(trained_before[name])
    return spec


def describe_lora(spec: LoraSpec, model: nn.Module) -> str:
    """The start-up line of a run's adapters: rank, scale, layers per tower, trainable values."""
    per_tower = {tower: sum(name.startswith(tower + ".") for name in spec.modules) for tower in TOWERS.values()}
    adapters = sum(parameter.numel() for name, parameter in model.named_parameters() if is_adapter_name(name))
    towers = ", ".join(f"{count} in the {tower}" for tower, count in per_tower.items() if count)
    return (f"LoRA (peft): rank {spec.rank}, alpha {spec.alpha:g} (scale {spec.alpha / spec.rank:g}), dropout "
            f"{spec.dropout:g}; {len(spec.modules)} layers adapted ({towers}), {adapters:,} adapter values")

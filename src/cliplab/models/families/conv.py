"""Tower family "conv": cliplab's small convolutional tower for tiny images (`towers.conv_tower`,
`VisionConfig`); open_clip and Hugging Face have no such tower, so it has no foreign layout."""

from __future__ import annotations

from cliplab.models.families.spec import TowerFamily, each_stage
from cliplab.models.tower_configs import VisionConfig
from cliplab.models.towers.conv_tower import ConvTower
from cliplab.models.towers.locking import open_clip_layout


FAMILY = TowerFamily(
    kind="conv", side="vision", config=VisionConfig, build=ConvTower,
    summary="cliplab's small conv net for tiny images (Fashion-MNIST on a CPU)",
    lock_groups=open_clip_layout(ConvTower.parameter_groups), fsdp_units=each_stage,
    lora_targets=lambda vision: ("0",),  # every convolution: the first layer of each ConvNormAct
)

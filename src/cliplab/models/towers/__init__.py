"""Towers assembled from `cliplab.models.layers`; `build_vision_tower` picks one by config kind."""

from cliplab.models.config import VisionConfig
from cliplab.models.towers.conv_tower import ConvTower
from cliplab.models.towers.resnet_tower import ModifiedResNet
from cliplab.models.towers.text_decoder import MultimodalDecoder
from cliplab.models.towers.text_transformer import TextTransformer
from cliplab.models.towers.vision_transformer import VisionTransformer

VISION_TOWERS = {"vit": VisionTransformer, "conv": ConvTower, "resnet": ModifiedResNet}


def build_vision_tower(config: VisionConfig) -> VisionTransformer | ConvTower | ModifiedResNet:
    """The image tower named by `config.kind`."""
    return VISION_TOWERS[config.kind](config)


__all__ = ["ConvTower", "ModifiedResNet", "MultimodalDecoder", "TextTransformer", "VISION_TOWERS", "VisionTransformer",
           "build_vision_tower"]

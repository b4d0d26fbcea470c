"""Towers assembled from `cliplab.models.layers`. Which module builds a config is its tower
family's business (`cliplab.models.families.build_tower`)."""

from cliplab.models.towers.conv_tower import ConvTower
from cliplab.models.towers.resnet_tower import ModifiedResNet
from cliplab.models.towers.text_decoder import MultimodalDecoder
from cliplab.models.towers.text_transformer import TextTransformer
from cliplab.models.towers.vision_transformer import VisionTransformer

__all__ = ["ConvTower", "ModifiedResNet", "MultimodalDecoder", "TextTransformer", "VisionTransformer"]

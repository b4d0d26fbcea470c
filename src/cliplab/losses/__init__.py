"""Contrastive losses: open_clip's names and signatures, exact across processes.

Migrating from open_clip is a change of import: `from cliplab.losses import ClipLoss` (see
docs/losses.md for the gradient convention and what cliplab adds).
"""

from .clip import ClipLoss, ClipLossConfig
from .coca import CoCaLoss
from .common import ContrastiveMetrics
from .distill import DistillClipLoss
from .gather import gather_features
from .siglip import SigLipLoss, SigLipLossConfig
from cliplab.distributed.neighbour import (
    neighbour_exchange,
    neighbour_exchange_bidir,
    neighbour_exchange_bidir_with_grad,
    neighbour_exchange_with_grad,
)
from .tiled_clip import TiledClipLoss
from .tiled_siglip import TiledSigLipLoss

__all__ = [
    "ClipLoss",
    "ClipLossConfig",
    "CoCaLoss",
    "ContrastiveMetrics",
    "DistillClipLoss",
    "SigLipLoss",
    "SigLipLossConfig",
    "TiledClipLoss",
    "TiledSigLipLoss",
    "gather_features",
    "neighbour_exchange",
    "neighbour_exchange_bidir",
    "neighbour_exchange_bidir_with_grad",
    "neighbour_exchange_with_grad",
]

"""Contrastive losses: open_clip's names and signatures, exact across processes.

Migrating from open_clip is a change of import: `from cliplab.losses import ClipLoss` (see
docs/losses.md for the gradient convention and what cliplab adds). Every name is imported on first
use (`cliplab.lazy_exports`), so that `cliplab.losses.siglip_exchanges` (read by the training
config) imports without torch.
"""

from cliplab.lazy_exports import exported_names, lazy_exports

# defining module -> its public names
_EXPORTS = {
    "cliplab.losses.clip": ("ClipLoss", "ClipLossConfig"),
    "cliplab.losses.coca": ("CoCaLoss",),
    "cliplab.losses.common": ("ContrastiveMetrics",),
    "cliplab.losses.distill": ("DistillClipLoss",),
    "cliplab.losses.gather": ("gather_features",),
    "cliplab.losses.siglip": ("SigLipLoss", "SigLipLossConfig"),
    "cliplab.distributed.neighbour": ("neighbour_exchange", "neighbour_exchange_bidir",
                                      "neighbour_exchange_bidir_with_grad", "neighbour_exchange_with_grad"),
    "cliplab.losses.tiled_clip": ("TiledClipLoss",),
    "cliplab.losses.tiled_siglip": ("TiledSigLipLoss",),
}

__all__ = exported_names(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

"""x-clip family loss terms as pure functions of tensors.

Every term that uses in-batch negatives (DCL, FILIP, SimCLR, multiview, similarity regularisation)
returns, on every process, the loss of the whole global batch; see `global_batch` for how and for
the gradient convention.
"""

from cliplab.losses.xclip.dcl import contrastive_row_losses, global_contrastive_loss
from cliplab.losses.xclip.filip import filip_loss, image_to_text_similarity, text_to_image_similarity
from cliplab.losses.xclip.mlm import MaskedTokens, mask_tokens, mlm_loss
from cliplab.losses.xclip.multiview import multiview_contrastive_loss
from cliplab.losses.xclip.sim_reg import similarity_regularization_loss
from cliplab.losses.xclip.simclr import simclr_loss
from cliplab.losses.xclip.simsiam import simsiam_loss

__all__ = [
    "MaskedTokens",
    "contrastive_row_losses",
    "filip_loss",
    "global_contrastive_loss",
    "image_to_text_similarity",
    "mask_tokens",
    "mlm_loss",
    "multiview_contrastive_loss",
    "similarity_regularization_loss",
    "simclr_loss",
    "simsiam_loss",
    "text_to_image_similarity",
]

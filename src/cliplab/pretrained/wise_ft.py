"""WiSE-FT: weight-space ensembling of a zero-shot and a fine-tuned model (Wortsman et al., CVPR 2022).

For every floating tensor, theta(alpha) = (1 - alpha) * theta_zero_shot + alpha * theta_fine_tuned:
alpha 0 is the zero-shot model, 1 the fine-tuned one, and the paper reports that intermediate
values (0.5 is its default) keep most of the fine-tuned accuracy while recovering robustness under
distribution shift. Integer tensors (BatchNorm's step counters) come from the fine-tuned model.
Both models must have the same architecture: same tensor names and shapes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch

from cliplab.errors import UserError
from cliplab.models import CLIP
from cliplab.pretrained.key_maps import check_state_dict


def interpolate_state_dicts(zero_shot: Mapping[str, torch.Tensor], fine_tuned: Mapping[str, torch.Tensor],
                            alpha: float) -> dict[str, torch.Tensor]:
    """(1 - alpha) * zero_shot + alpha * fine_tuned, tensor by tensor, computed in float32 and
    returned in the fine-tuned tensor's dtype; StateDictMismatchError lists what differs."""
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0.0 <= alpha <= 1.0:
        raise UserError(f"--alpha must be a number in [0, 1], got {alpha!r}")
    check_state_dict(fine_tuned, zero_shot, "the zero-shot model (against the fine-tuned one)")
    mixed = {}
    for name, tuned in fine_tuned.items():
        if tuned.is_floating_point():
            start = zero_shot[name].to(device=tuned.device, dtype=torch.float32).reshape(tuned.shape)
            mixed[name] = ((1.0 - alpha) * start + alpha * tuned.float()).to(tuned.dtype)
        else:
            mixed[name] = tuned.clone()
    return mixed


def architecture(model: CLIP) -> dict:
    """The config entries that shape the weights (not preprocessing or initial values)."""
    return {key: value for key, value in model.config.to_dict().items()
            if key not in ("preprocess", "init_logit_scale", "init_logit_bias")}


def wise_ft(zero_shot: CLIP, fine_tuned: CLIP, alpha: float) -> CLIP:
    """A copy of `fine_tuned` (its config, preprocessing) holding the interpolated weights."""
    ours, theirs = (architecture(model) for model in (zero_shot, fine_tuned))
    if ours != theirs:
        differing = sorted(key for key, value in ours.items() if theirs[key] != value)
        raise UserError(f"the zero-shot and fine-tuned models have different architectures (they differ in "
                        f"{', '.join(differing)}); WiSE-FT interpolates models of one architecture")
    mixed = copy.deepcopy(fine_tuned)
    mixed.load_state_dict(interpolate_state_dicts(zero_shot.state_dict(), fine_tuned.state_dict(), alpha))
    return mixed.eval()

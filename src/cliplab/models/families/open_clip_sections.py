"""What the families share when they read and write open_clip's `vision_cfg` / `text_cfg` sections:
the keys open_clip's config dataclasses have and the checks every reader makes.

The keys are open_clip 3.3.0's (`CLIPVisionCfg`, `CLIPTextCfg`): a section holds all of them
whichever tower it describes (open_clip ignores the ones its tower does not read), so every
reader accepts them all and refuses only a key open_clip does not have.
"""

from __future__ import annotations

from typing import Any

from cliplab.errors import UnsupportedArchitectureError

# Keys that change nothing cliplab builds (output_tokens: cliplab towers always return their
# tokens) or that choose the tokenizer.
IGNORED_VISION_KEYS = {"output_tokens"}
IGNORED_TEXT_KEYS = {"output_tokens", "hf_tokenizer_name", "tokenizer_kwargs", "tokenizer_mode",
                     "final_ln_after_pool"}  # open_clip 3.3.0's TextTransformer ignores it too
# open_clip keys whose non-default values need towers cliplab's own transformers do not build.
UNSUPPORTED = {
    "timm_model_name": None, "hf_model_name": None, "pos_embed_type": "learnable", "block_type": None,
    "qk_norm": False, "scaled_cosine_attn": False, "scale_heads": False, "scale_attn_inner": False,
    "scale_attn": False, "scale_fc": False, "act_kwargs": None,
}
TIMM_KEYS = {"timm_model_name", "timm_model_pretrained", "timm_pool", "timm_proj", "timm_proj_bias", "timm_drop",
             "timm_drop_path"}
HF_KEYS = {"hf_model_name", "hf_model_pretrained", "hf_proj_type", "hf_pooler_type"}
VISION_KEYS = {"layers", "width", "head_width", "mlp_ratio", "patch_size", "image_size", "ls_init_value",
               "patch_dropout", "attentional_pool", "attn_pooler_queries", "attn_pooler_heads", "no_ln_pre",
               "final_ln_after_pool", "pool_type", "norm_kwargs", *IGNORED_VISION_KEYS, *UNSUPPORTED, *TIMM_KEYS}
TEXT_KEYS = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio", "ls_init_value",
             "embed_cls", "pad_id", "eos_id", "no_causal_mask", "pool_type", "proj_bias", "proj_type",
             "norm_kwargs", *IGNORED_TEXT_KEYS, *UNSUPPORTED, *HF_KEYS}


def check_known(section: dict, known: set[str], where: str) -> None:
    """UnsupportedArchitectureError naming the keys of `section` outside `known`."""
    unknown = sorted(set(section) - known)
    if unknown:
        raise UnsupportedArchitectureError(f"{where} has keys cliplab does not know: {unknown}")


def check_supported(section: dict, where: str) -> None:
    """UnsupportedArchitectureError for a key of `UNSUPPORTED` away from its default."""
    for key, default in UNSUPPORTED.items():
        if section.get(key, default) not in (default, {}):
            raise UnsupportedArchitectureError(
                f"{where}.{key}={section[key]!r} needs a tower cliplab does not build "
                f"(cliplab reads open_clip's own transformer and ResNet towers)")


def norm_eps(section: dict, where: str) -> float:
    """The LayerNorm eps of `norm_kwargs` (open_clip's default 1e-5)."""
    norm_kwargs = section.get("norm_kwargs") or {}
    unknown = sorted(set(norm_kwargs) - {"eps"})
    if unknown:
        raise UnsupportedArchitectureError(f"{where}.norm_kwargs {unknown}: only 'eps' is supported")
    return float(norm_kwargs.get("eps", 1e-5))


def norm_kwargs(eps: float) -> dict:
    """The `norm_kwargs` entry for `eps` ({} at open_clip's default)."""
    return {} if eps == 1e-5 else {"norm_kwargs": {"eps": eps}}


def image_size(values: Any) -> int:
    """open_clip's `image_size` (an int or a square [H, W]) as one side."""
    if isinstance(values, (list, tuple)):
        if len(values) != 2 or values[0] != values[1]:
            raise UnsupportedArchitectureError(f"vision_cfg.image_size={values!r}: cliplab models take "
                                               "square images")
        values = values[0]
    return int(values)


def refuse(what: str) -> None:
    """UnsupportedArchitectureError for a config open_clip cannot represent."""
    raise UnsupportedArchitectureError(f"open_clip cannot represent this model: {what}")


def mlp_ratio(prefix: str, tower) -> float:
    """open_clip's mlp_ratio for a tower whose hidden width int(width * ratio) must come out exact."""
    hidden = tower.mlp_width if tower.mlp_width is not None else int(tower.width * tower.mlp_ratio)
    ratio = tower.mlp_ratio if tower.mlp_width is None else hidden / tower.width
    if int(tower.width * ratio) != hidden:
        refuse(f"{prefix}.mlp_width {hidden} is not int(width * ratio) for any ratio open_clip reads back")
    return ratio

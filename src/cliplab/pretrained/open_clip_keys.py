"""cliplab <-> open_clip / OpenAI CLIP tensor names (OpenAI's `.pt` files use open_clip's layout).

Each tower's names are its family's (`TowerFamily.open_clip.rules`, see `cliplab.models.families`:
the image tower under open_clip's `visual.`, the text tower at the top level or under `text.`);
what is left here is the model level:

    cliplab                                       open_clip
    decoder.transformer.blocks.N.self_block       text_decoder.resblocks.N
    decoder.transformer.blocks.N.cross_block      text_decoder.cross_attn.N (ln_1_kv: norm_context)
    decoder.norm_final / lm_head.weight           text_decoder.ln_final / text_projection (transposed)
    logit_scale, logit_bias                       logit_scale, logit_bias

The text tower sits at the top level in open_clip's `CLIP` and under `text.` in `CustomTextCLIP`
and `CoCa`: `text_prefix` chooses.
"""

from __future__ import annotations

from cliplab.errors import UnsupportedArchitectureError
from cliplab.models.config import ModelConfig
from cliplab.models.families import family_of
from cliplab.models.families.layouts import block_rules, multihead_rules
from cliplab.models.key_rules import PARAMETER, KeyRule, rule


def _decoder_rules() -> list[KeyRule]:
    cross = r"decoder\.transformer\.blocks\.(\d+)\.cross_block"
    return [
        *block_rules(r"decoder\.transformer\.blocks\.(\d+)\.self_block", "text_decoder.resblocks.{0}"),
        rule(cross + r"\.norm_attn\." + PARAMETER, "text_decoder.cross_attn.{0}.ln_1.{param}"),
        rule(cross + r"\.norm_context\." + PARAMETER, "text_decoder.cross_attn.{0}.ln_1_kv.{param}"),
        *multihead_rules(cross + r"\.cross_attn", "text_decoder.cross_attn.{0}.attn", same_width=True),
        rule(cross + r"\.scale_attn\.gamma", "text_decoder.cross_attn.{0}.ls_1.gamma"),
        rule(cross + r"\.norm_mlp\." + PARAMETER, "text_decoder.cross_attn.{0}.ln_2.{param}"),
        rule(cross + r"\.mlp\.fc\." + PARAMETER, "text_decoder.cross_attn.{0}.mlp.c_fc.{param}"),
        rule(cross + r"\.mlp\.proj\." + PARAMETER, "text_decoder.cross_attn.{0}.mlp.c_proj.{param}"),
        rule(cross + r"\.scale_mlp\.gamma", "text_decoder.cross_attn.{0}.ls_2.gamma"),
        rule(r"decoder\.norm_final\." + PARAMETER, "text_decoder.ln_final.{param}"),
        rule(r"decoder\.lm_head\.weight", "text_decoder.text_projection", transform="transpose"),
    ]


def _tower_rules(tower, prefix: str, side: str) -> list[KeyRule]:
    form = family_of(tower).open_clip
    if form is None:
        raise UnsupportedArchitectureError(f"open_clip has no {side} tower of kind {tower.kind!r}")
    return form.rules(tower, prefix)


def open_clip_rules(config: ModelConfig, text_prefix: str = "") -> list[KeyRule]:
    """The rules for `config` in open_clip's layout; text_prefix "" (CLIP) or "text." (CoCa,
    CustomTextCLIP)."""
    decoder = _decoder_rules() if config.kind == "coca" else []
    return [*_tower_rules(config.vision, "visual.", "vision"), *_tower_rules(config.text, text_prefix, "text"),
            *decoder, rule(r"logit_scale", "logit_scale"), rule(r"logit_bias", "logit_bias")]


def open_clip_text_prefix(config: ModelConfig) -> str:
    """Where open_clip's own model class for `config` keeps the text tower: CoCa and
    CustomTextCLIP (a text family with `OpenClipForm.custom_text`, e.g. Hugging Face towers) under
    "text."."""
    form = family_of(config.text).open_clip
    return "text." if config.kind == "coca" or (form is not None and form.custom_text) else ""

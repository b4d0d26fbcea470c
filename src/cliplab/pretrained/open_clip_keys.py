"""cliplab <-> open_clip / OpenAI CLIP tensor names (OpenAI's `.pt` files use open_clip's layout).

    cliplab                                       open_clip
    vision_tower.patch_embedding                  visual.conv1
    vision_tower.class_embedding / position_emb.  visual.class_embedding / positional_embedding
    vision_tower.norm_pre / norm_post             visual.ln_pre / ln_post
    *.transformer.blocks.N.norm_attn / norm_mlp   *.transformer.resblocks.N.ln_1 / ln_2
    *.attn.qkv / attn.out                         *.attn.in_proj_{weight,bias} / attn.out_proj
    *.scale_attn.gamma / scale_mlp.gamma          *.ls_1.gamma / ls_2.gamma
    *.mlp.fc / mlp.proj                           *.mlp.c_fc / mlp.c_proj
    vision_tower.pooler (attentional pooler)      visual.attn_pool (query, ln_q, ln_k, attn)
    image_projection.weight [E, W]                visual.proj [W, E] (transposed)
    vision_tower (resnet): stem, stages.I.J       visual.conv1..3 / bn1..3, layerI+1.J
    vision_tower.attention_pool.qkv               visual.attnpool.{q,k,v}_proj (concatenated)
    image_projection (resnet, with bias)          visual.attnpool.c_proj
    text_tower.token_embedding / position_emb.    [text.]token_embedding / positional_embedding
    text_tower.class_embedding / norm_final       text.cls_emb / [text.]ln_final
    text_projection.weight [E, W]                 [text.]text_projection [W, E] (transposed)
    decoder.transformer.blocks.N.self_block       text_decoder.resblocks.N
    decoder.transformer.blocks.N.cross_block      text_decoder.cross_attn.N (ln_1_kv: norm_context)
    decoder.norm_final / lm_head.weight           text_decoder.ln_final / text_projection (transposed)
    logit_scale, logit_bias                       logit_scale, logit_bias

The text tower sits at the top level in open_clip's `CLIP` and under `text.` in `CustomTextCLIP`
and `CoCa`: `text_prefix` chooses.
"""

from __future__ import annotations

from cliplab.models.config import ModelConfig
from cliplab.models.tower_configs import RESNET_STAGES
from cliplab.pretrained.key_maps import KeyRule, rule

PARAMETER = r"(?P<param>weight|bias)"
NORM = r"(?P<param>weight|bias|running_mean|running_var|num_batches_tracked)"


def block_rules(ours: str, theirs: str) -> list[KeyRule]:
    """A transformer block at cliplab prefix `ours` (e.g. r"text_tower\\.transformer\\.blocks\\.(\\d+)")
    <-> open_clip `theirs` with "{0}" for the block index."""
    return [
        rule(ours + r"\.norm_attn\." + PARAMETER, theirs + ".ln_1.{param}"),
        rule(ours + r"\.attn\.qkv\." + PARAMETER, theirs + ".attn.in_proj_{param}"),
        rule(ours + r"\.attn\.out\." + PARAMETER, theirs + ".attn.out_proj.{param}"),
        rule(ours + r"\.scale_attn\.gamma", theirs + ".ls_1.gamma"),
        rule(ours + r"\.norm_mlp\." + PARAMETER, theirs + ".ln_2.{param}"),
        rule(ours + r"\.mlp\.fc\." + PARAMETER, theirs + ".mlp.c_fc.{param}"),
        rule(ours + r"\.mlp\.proj\." + PARAMETER, theirs + ".mlp.c_proj.{param}"),
        rule(ours + r"\.scale_mlp\.gamma", theirs + ".ls_2.gamma"),
    ]


def multihead_rules(ours: str, theirs: str, same_width: bool) -> list[KeyRule]:
    """cliplab CrossAttention (query, key_value, out) <-> an nn.MultiheadAttention: packed in_proj
    when keys have the query's width, else separate q/k/v_proj_weight with one in_proj_bias."""
    weights = ([rule(ours + r"\.(?:query|key_value)\.weight", theirs + ".in_proj_weight")] if same_width else [
        rule(ours + r"\.query\.weight", theirs + ".q_proj_weight"),
        rule(ours + r"\.key_value\.weight", theirs + ".k_proj_weight", theirs + ".v_proj_weight")])
    return weights + [rule(ours + r"\.(?:query|key_value)\.bias", theirs + ".in_proj_bias"),
                      rule(ours + r"\.out\." + PARAMETER, theirs + ".out_proj.{param}")]


def _vit_rules(config: ModelConfig) -> list[KeyRule]:
    vision = config.vision
    pooler = multihead_rules(r"vision_tower\.pooler\.attn", "visual.attn_pool.attn",
                             same_width=vision.pool_width == vision.width)
    return [
        rule(r"vision_tower\.patch_embedding\." + PARAMETER, "visual.conv1.{param}"),
        rule(r"vision_tower\.class_embedding", "visual.class_embedding"),
        rule(r"vision_tower\.position_embedding", "visual.positional_embedding"),
        rule(r"vision_tower\.norm_pre\." + PARAMETER, "visual.ln_pre.{param}"),
        *block_rules(r"vision_tower\.transformer\.blocks\.(\d+)", "visual.transformer.resblocks.{0}"),
        rule(r"vision_tower\.pooler\.query", "visual.attn_pool.query"),
        rule(r"vision_tower\.pooler\.norm_query\." + PARAMETER, "visual.attn_pool.ln_q.{param}"),
        rule(r"vision_tower\.pooler\.norm_context\." + PARAMETER, "visual.attn_pool.ln_k.{param}"),
        *pooler,
        rule(r"vision_tower\.norm_post\." + PARAMETER, "visual.ln_post.{param}"),
        rule(r"image_projection\.weight", "visual.proj", transform="transpose"),
    ]


_STEM = {"0": "conv1", "1": "bn1", "3": "conv2", "4": "bn2", "6": "conv3", "7": "bn3"}


def _resnet_rules() -> list[KeyRule]:
    stem = [rule(rf"vision_tower\.stem\.{index}\." + NORM, f"visual.{name}.{{param}}")
            for index, name in _STEM.items()]
    stages = []
    for index in range(RESNET_STAGES):  # open_clip counts its stages layer1..layer4
        ours, theirs = rf"vision_tower\.stages\.{index}\.(\d+)", f"visual.layer{index + 1}.{{0}}"
        stages += [rule(ours + r"\.(conv\d|bn\d)\." + NORM, theirs + ".{1}.{param}"),
                   rule(ours + r"\.shortcut\.1\.weight", theirs + ".downsample.0.weight"),
                   rule(ours + r"\.shortcut\.2\." + NORM, theirs + ".downsample.1.{param}")]
    return stem + stages + [
        rule(r"vision_tower\.attention_pool\.position_embedding", "visual.attnpool.positional_embedding"),
        rule(r"vision_tower\.attention_pool\.qkv\." + PARAMETER, "visual.attnpool.q_proj.{param}",
             "visual.attnpool.k_proj.{param}", "visual.attnpool.v_proj.{param}"),
        rule(r"image_projection\." + PARAMETER, "visual.attnpool.c_proj.{param}"),
    ]


def _text_rules(config: ModelConfig, text_prefix: str) -> list[KeyRule]:
    projection = ([rule(r"text_projection\." + PARAMETER, text_prefix + "text_projection.{param}")]
                  if config.text.projection == "linear_bias" else
                  [rule(r"text_projection\.weight", text_prefix + "text_projection", transform="transpose")])
    return [
        rule(r"text_tower\.token_embedding\.weight", text_prefix + "token_embedding.weight"),
        rule(r"text_tower\.position_embedding", text_prefix + "positional_embedding"),
        rule(r"text_tower\.class_embedding", text_prefix + "cls_emb"),
        *block_rules(r"text_tower\.transformer\.blocks\.(\d+)", text_prefix + "transformer.resblocks.{0}"),
        rule(r"text_tower\.norm_final\." + PARAMETER, text_prefix + "ln_final.{param}"),
        *projection,
    ]


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


def open_clip_rules(config: ModelConfig, text_prefix: str = "") -> list[KeyRule]:
    """The rules for `config` in open_clip's layout; text_prefix "" (CLIP) or "text." (CoCa,
    CustomTextCLIP)."""
    vision = _resnet_rules() if config.vision.kind == "resnet" else _vit_rules(config)
    decoder = _decoder_rules() if config.kind == "coca" else []
    return [*vision, *_text_rules(config, text_prefix), *decoder,
            rule(r"logit_scale", "logit_scale"), rule(r"logit_bias", "logit_bias")]


def open_clip_text_prefix(config: ModelConfig) -> str:
    """Where open_clip's own model class for `config` keeps the text tower: CoCa under "text."."""
    return "text." if config.kind == "coca" else ""

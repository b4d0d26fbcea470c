"""Tensor layouts the families share: open_clip's transformer block and `nn.MultiheadAttention`,
a Hugging Face encoder's layers and SigLIP's attention-probe head, each against cliplab's
`TransformerBlock` / `CrossAttention` / `ProbePooler`."""

from __future__ import annotations

from cliplab.models.key_rules import PARAMETER, KeyRule, rule


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


def encoder_rules(ours: str, theirs: str) -> list[KeyRule]:
    """Transformer blocks at cliplab prefix `ours` (a regex; the block index follows it) <-> an HF
    encoder at `theirs` ("...encoder.layers")."""
    layer = theirs + ".{0}"
    return [
        rule(ours + r"\.(\d+)\.norm_attn\." + PARAMETER, layer + ".layer_norm1.{param}"),
        rule(ours + r"\.(\d+)\.attn\.qkv\." + PARAMETER, layer + ".self_attn.q_proj.{param}",
             layer + ".self_attn.k_proj.{param}", layer + ".self_attn.v_proj.{param}"),
        rule(ours + r"\.(\d+)\.attn\.out\." + PARAMETER, layer + ".self_attn.out_proj.{param}"),
        rule(ours + r"\.(\d+)\.norm_mlp\." + PARAMETER, layer + ".layer_norm2.{param}"),
        rule(ours + r"\.(\d+)\.mlp\.fc\." + PARAMETER, layer + ".mlp.fc1.{param}"),
        rule(ours + r"\.(\d+)\.mlp\.proj\." + PARAMETER, layer + ".mlp.fc2.{param}"),
    ]


def probe_head_rules(ours: str, theirs: str) -> list[KeyRule]:
    """cliplab's `ProbePooler` at prefix `ours` (a regex) <-> Hugging Face SigLIP's attention-probe
    head at `theirs` ("vision_model.head": probe (1, 1, W), attention, layernorm, mlp)."""
    return [
        rule(ours + r"\.probe", theirs + ".probe", transform="squeeze2"),
        *multihead_rules(ours + r"\.attn", theirs + ".attention", same_width=True),
        rule(ours + r"\.norm\." + PARAMETER, theirs + ".layernorm.{param}"),
        rule(ours + r"\.mlp\.fc\." + PARAMETER, theirs + ".mlp.fc1.{param}"),
        rule(ours + r"\.mlp\.proj\." + PARAMETER, theirs + ".mlp.fc2.{param}"),
    ]

"""Tensor layouts the families share: open_clip's transformer block and `nn.MultiheadAttention`,
a Hugging Face encoder's layers and SigLIP's attention-probe head, each against cliplab's
`TransformerBlock` / `CrossAttention` / `ProbePooler`."""

from __future__ import annotations

from cliplab.models.key_rules import PARAMETER, KeyRule, renamed, rule


def block_rules(ours: str, theirs: str) -> list[KeyRule]:
    """A transformer block at cliplab prefix `ours` (e.g. r"text_tower\\.transformer\\.blocks\\.(\\d+)")
    <-> open_clip `theirs` with "{0}" for the block index."""
    return [rule(ours + r"\.attn\.qkv\." + PARAMETER, theirs + ".attn.in_proj_{param}"),
            *renamed(ours + r"\.", theirs + ".", {
                "norm_attn.": "ln_1", "attn.out.": "attn.out_proj", "scale_attn.gamma": "ls_1.gamma",
                "norm_mlp.": "ln_2", "mlp.fc.": "mlp.c_fc", "mlp.proj.": "mlp.c_proj",
                "scale_mlp.gamma": "ls_2.gamma"})]


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
    block, layer = ours + r"\.(\d+)\.", theirs + ".{0}."
    return [rule(block + r"attn\.qkv\." + PARAMETER, *(layer + f"self_attn.{part}_proj.{{param}}" for part in "qkv")),
            *renamed(block, layer, {"norm_attn.": "layer_norm1", "attn.out.": "self_attn.out_proj",
                                    "norm_mlp.": "layer_norm2", "mlp.fc.": "mlp.fc1", "mlp.proj.": "mlp.fc2"})]


def probe_head_rules(ours: str, theirs: str) -> list[KeyRule]:
    """cliplab's `ProbePooler` at prefix `ours` (a regex) <-> Hugging Face SigLIP's attention-probe
    head at `theirs` ("vision_model.head": probe (1, 1, W), attention, layernorm, mlp)."""
    return [rule(ours + r"\.probe", theirs + ".probe", transform="squeeze2"),
            *multihead_rules(ours + r"\.attn", theirs + ".attention", same_width=True),
            *renamed(ours + r"\.", theirs + ".", {"norm.": "layernorm", "mlp.fc.": "mlp.fc1", "mlp.proj.": "mlp.fc2"})]

"""What open_clip's `TimmModel` puts after a timm trunk that pools its feature map to one vector
(ConvNeXt, Swin), and the trunk's stochastic depth: the config fields, the head module, its tensor
names and the open_clip options, shared by the families "timm_convnext" and "timm_swin".

    open_clip vision_cfg           cliplab config (`TimmHeadFields`)
    timm_pool ("" keeps timm's)    pool "avg" / "max" (the trunk's global pooling)
    timm_proj "linear"             projection "linear" ("linear_bias" with timm_proj_bias): the model's
                                   image_projection (visual.head.proj), after dropout timm_drop
    timm_proj "mlp"                the tower's own head (visual.head.mlp: fc1 to 2 * embed_dim with
                                   bias, GELU, dropout timm_drop, fc2 to embed_dim with bias only under
                                   timm_proj_bias): mlp_head_width / mlp_head_output, projection "none"
    timm_proj "none"               the pooled trunk output is the embedding: projection "none"
    timm_drop_path                 drop_path (None: timm's default for the model)

The head stays trainable under open_clip's lock of the tower (`TimmModel.lock` freezes the trunk
only), so the families' `projection_locked` says False and the MLP head is in none of their groups.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from cliplab.models.families.open_clip_sections import refuse
from cliplab.models.families.spec import OpenClipContext
from cliplab.models.families.timm_trunk import check_exportable, check_written, refuse_option
from cliplab.models.key_rules import PARAMETER, KeyRule, rule
from cliplab.models.layers.projection_mlp import ProjectionMLP
from cliplab.models.timm_models import timm_constructor_args
from cliplab.models.tower_configs import PROJECTIONS, check_bool, check_choice, check_positive_int, check_probability

HEAD_POOLS = ("avg", "max")
OPEN_CLIP_PROJECTIONS = ("linear", "mlp", "none")


@dataclass(kw_only=True)
class TimmHeadFields:
    """The head fields of a pooled timm trunk's config (see the module docstring).

    pool: "avg" or "max" over the final feature map. mlp_head_width / mlp_head_output: the hidden
    and output widths of open_clip's MLP head inside the tower (both None: no such head);
    mlp_head_bias: its output layer's bias. head_dropout: dropout on the pooled vector before the
    model's projection (in the MLP head: after its activation). drop_path: stochastic depth of the
    trunk's last block (earlier blocks rise linearly from 0). projection: the model's map into the
    shared latent ("linear", "linear_bias" or "none"; "none" with an MLP head).
    """

    pool: str = "avg"
    mlp_head_width: int | None = None
    mlp_head_output: int | None = None
    mlp_head_bias: bool = False
    head_dropout: float = 0.0
    drop_path: float = 0.0
    projection: str = "linear"

    def check_head(self) -> None:
        check_choice("vision.pool", self.pool, HEAD_POOLS)
        if (self.mlp_head_width is None) != (self.mlp_head_output is None):
            raise ValueError("vision.mlp_head_width and vision.mlp_head_output are both set (an MLP head) or both "
                             f"None, got {self.mlp_head_width!r} and {self.mlp_head_output!r}")
        if self.mlp_head_width is not None:
            check_positive_int("vision.mlp_head_width", self.mlp_head_width)
            check_positive_int("vision.mlp_head_output", self.mlp_head_output)
        check_bool("vision.mlp_head_bias", self.mlp_head_bias)
        if self.mlp_head_bias and self.mlp_head_width is None:
            raise ValueError("vision.mlp_head_bias=True needs an MLP head (vision.mlp_head_width)")
        check_probability("vision.head_dropout", self.head_dropout)
        check_probability("vision.drop_path", self.drop_path)
        check_choice("vision.projection", self.projection, PROJECTIONS)
        if self.mlp_head_width is not None and self.projection != "none":
            raise ValueError(f"vision.projection must be 'none' with an MLP head (the head maps into the shared "
                             f"latent), got {self.projection!r}")

    def head_output_width(self, trunk_width: int) -> int:
        """The tower's output width: the MLP head's, else the trunk's."""
        return self.mlp_head_output if self.mlp_head_output is not None else trunk_width


def projection_locked(config: TimmHeadFields) -> bool:
    """Never: the projection is open_clip's `visual.head`, outside the trunk `TimmModel.lock` freezes."""
    return False


def build_head(config: TimmHeadFields, trunk_width: int) -> nn.Module:
    """The head after pooling: [.., trunk_width] -> [.., output width] (dropout alone without MLP head)."""
    if config.mlp_head_width is None:
        return nn.Dropout(config.head_dropout)
    return ProjectionMLP(trunk_width, config.mlp_head_width, config.mlp_head_output, output_bias=config.mlp_head_bias,
                         dropout=config.head_dropout)


def head_rules(prefix: str) -> list[KeyRule]:
    """cliplab's head tensors <-> open_clip's `visual.head` under `prefix`."""
    return [rule(r"vision_tower\.head\.fc\." + PARAMETER, prefix + "head.mlp.fc1.{param}"),
            rule(r"vision_tower\.head\.proj\." + PARAMETER, prefix + "head.mlp.fc2.{param}"),
            rule(r"image_projection\." + PARAMETER, prefix + "head.proj.{param}")]


def read_head(vision: dict, context: OpenClipContext, kind: str) -> dict:
    """The `TimmHeadFields` values of an open_clip `vision_cfg` naming a timm model of family `kind`,
    as open_clip's TimmModel builds them (refusals in `refuse_option`'s form)."""
    name = vision["timm_model_name"]
    arguments = timm_constructor_args(name)
    proj = vision.get("timm_proj", "linear")
    if proj not in OPEN_CLIP_PROJECTIONS:
        refuse_option(name, kind, "timm_proj", proj)
    pool = vision.get("timm_pool", "avg")
    if proj == "none" and not pool:
        refuse_option(name, kind, "timm_pool", pool)  # open_clip would pass the unpooled feature map on
    pool = pool or arguments["global_pool"]
    if pool not in HEAD_POOLS:
        refuse_option(name, kind, "timm_pool", pool)
    if vision.get("patch_dropout", 0.0):
        refuse_option(name, kind, "patch_dropout", vision["patch_dropout"])
    drop_path = vision.get("timm_drop_path")
    values = {"pool": pool, "drop_path": float(arguments["drop_path_rate"] if drop_path is None else drop_path),
              "head_dropout": float(vision.get("timm_drop", 0.0)) if proj != "none" else 0.0}
    bias = bool(vision.get("timm_proj_bias", False))
    if proj == "mlp":
        return {**values, "mlp_head_width": 2 * context.embed_dim, "mlp_head_output": context.embed_dim,
                "mlp_head_bias": bias, "projection": "none"}
    return {**values, "projection": "none" if proj == "none" else ("linear_bias" if bias else "linear")}


def write_head(config: TimmHeadFields, context: OpenClipContext) -> dict:
    """The open_clip options of `config`'s head (inverse of `read_head`); refused where open_clip's
    TimmModel has no such head."""
    if config.mlp_head_width is not None:
        if (config.mlp_head_width, config.mlp_head_output) != (2 * context.embed_dim, context.embed_dim):
            refuse(f"open_clip's MLP head maps to 2 * embed_dim, then embed_dim ({2 * context.embed_dim}, "
                   f"{context.embed_dim}); got vision.mlp_head_width={config.mlp_head_width}, "
                   f"vision.mlp_head_output={config.mlp_head_output}")
        proj, bias = "mlp", config.mlp_head_bias
    else:
        proj, bias = ("none" if config.projection == "none" else "linear"), config.projection == "linear_bias"
        if proj == "none" and config.head_dropout:
            refuse(f"open_clip has no dropout without a projection (vision.head_dropout={config.head_dropout})")
    return {"timm_pool": config.pool, "timm_proj": proj, "timm_proj_bias": bias, "timm_drop": config.head_dropout,
            "timm_drop_path": config.drop_path}


def write_section(config: TimmHeadFields, context: OpenClipContext, kind: str, image_side: int, read) -> dict:
    """The open_clip vision_cfg of `config` (a family `kind` config with a `timm_model_name`):
    the timm model by name, `image_side`, the head options; refused unless `read` (the family's
    reader) gives `config` back from it, i.e. unless timm's model is this tower."""
    check_exportable(config.timm_model_name, kind)
    values = {"timm_model_name": config.timm_model_name, "timm_model_pretrained": False, "image_size": image_side,
              **write_head(config, context)}
    return check_written(config, values, lambda written: read(written, context))

"""The training configuration: one small keyword-only dataclass per concern, composed into TrainConfig.

Every section validates itself in `__post_init__` with `cliplab.config_checks` and raises
`ConfigError` naming the offending key and value, so a bad experiment fails at start-up rather than hours in. `config_io` builds a
TrainConfig from YAML/JSON/flags and prefixes the section name (`optim.lr`) to the key.

Defaults are the ones `cliplab train` uses with no arguments: the tiny model on Fashion-MNIST
captions, sized to finish in minutes on a 2-core CPU. open_clip's flag names keep their meaning;
see docs/training.md for the table from flag to key.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from cliplab.config_checks import (ConfigError, check_choice, check_int_at_least, check_non_negative, check_number,
                                   check_optional_positive_int, check_positive_int, check_probability, is_int,
                                   require)
from cliplab.data import DataConfig
from cliplab.data.sources import data_source
from cliplab.losses.siglip_exchanges import SIGLIP_DIST_IMPLS
from cliplab.objectives import ObjectivesConfig
from cliplab.precision_names import PRECISIONS

# The default run must finish in minutes on a 2-core CPU (docs/training.md, "The default recipe"):
# the registered `tiny` model is reshaped for it (a third conv stage, at 4x4, widening to 128
# channels; a 64-wide, 1-layer text tower; captions of at most 20 tokens, the Fashion-MNIST captions
# have at most 18) and trains on the whole 28x28 images, unaugmented (the training transform is the
# evaluation's). Other models get no implicit overrides.
DEFAULT_MODEL_OVERRIDES = {
    "tiny": {"vision.width": 128, "vision.layers": 3, "text.width": 64, "text.heads": 4, "text.layers": 1,
             "text.context_length": 20, "preprocess.train_crop_scale": [1.0, 1.0],
             "preprocess.train_crop_ratio": [1.0, 1.0], "preprocess.train_horizontal_flip": False},
}

LR_SCHEDULERS = ("cosine", "const")
# How --force-context-length lengthens pretrained text positions
# (`cliplab.models.resized_model.CONTEXT_EXTENSIONS`).
CONTEXT_EXTENSIONS = ("interpolate", "longclip")
REQUEUE_EXIT_CODES = (3, 125)  # the range `checkpoint.requeue_exit_code` takes


@dataclass(kw_only=True)
class ModelSetupConfig:
    """Which model to build and which parts of it train.

    name: a registered config (`cliplab.models.list_models()`: cliplab's and open_clip's names) or a
        path to a model JSON. With `pretrained`: the architecture of a checkpoint that does not carry
        one (an open_clip `epoch_K.pt`), or null to take the checkpoint's own (a name given must
        agree with it). Null without `pretrained` means "tiny".
    pretrained: a checkpoint to start from, in any format `cliplab.load` reads (--pretrained, as in
        open_clip): its weights, tokenizer and preprocessing (docs/pretrained.md, "Fine-tuning").
    overrides: keyword overrides passed to `create_model` (e.g. {"embed_dim": 64, "vision.width": 64});
        null (the default) means DEFAULT_MODEL_OVERRIDES for the model (for `tiny`: the slimmer
        sizes of the default run), {} the registered config unchanged. With `pretrained`: null or {}
        (the checkpoint fixes the architecture).
    tokenizer: a tokenizer.json file, a tokenizer directory or an open_clip model name (None: the
        resumed checkpoint's, the pretrained checkpoint's, the open_clip architecture's own, or one
        trained on the captions; see `cliplab.train.setup.tokenizer`).
    force_image_size: the side of the model's square input images instead of its config's (open_clip's
        --force-image-size); the preprocessing follows it. With `pretrained`, the checkpoint's learned
        position grids are resized to it by their tower family's rule (`cliplab.models.resized_model`).
    force_context_length: the text tower's context length instead of its config's (open_clip's
        --force-context-length); the tokenizer is made to it. With `pretrained`, the text positions are
        resized by `context_extension`: "interpolate" (open_clip's resize_text_pos_embed) or "longclip"
        (the first 20 kept, the rest stretched, Long-CLIP's rule).
    force_patch_dropout: the ViT's patch dropout instead of its config's (open_clip's
        --force-patch-dropout), for training only.
    image_mean / image_std: the per-channel (R, G, B) normalisation instead of the one
        `model_plan.plan_model` picks for the data (open_clip's --image-mean / --image-std). Not with
        `pretrained` (the checkpoint brings its preprocessing).
    lock_image / lock_text and their unlocked counts mean what open_clip's flags mean.
    """

    name: Optional[str] = None
    pretrained: Optional[str] = None
    overrides: Optional[dict] = None
    tokenizer: Optional[str] = None
    force_image_size: Optional[int] = None
    force_context_length: Optional[int] = None
    context_extension: str = "interpolate"
    force_patch_dropout: Optional[float] = None
    image_mean: Optional[tuple[float, ...]] = None
    image_std: Optional[tuple[float, ...]] = None
    lock_image: bool = False
    lock_image_unlocked_groups: int = 0
    lock_image_freeze_bn_stats: bool = False
    lock_text: bool = False
    lock_text_unlocked_layers: int = 0
    lock_text_freeze_layer_norm: bool = False
    grad_checkpointing: bool = False
    torchcompile: bool = False

    def __post_init__(self):
        require(self.pretrained is None or (isinstance(self.pretrained, str) and self.pretrained != ""),
                "pretrained", self.pretrained, "must be a checkpoint path (any format cliplab.load reads)")
        if self.name is None and self.pretrained is None:
            self.name = "tiny"
        require(self.name is None or (isinstance(self.name, str) and self.name != ""), "name", self.name,
                "must be a model name or path")
        if self.overrides is None:
            self.overrides = {} if self.pretrained else dict(DEFAULT_MODEL_OVERRIDES.get(self.name, {}))
        require(isinstance(self.overrides, dict), "overrides", self.overrides, "must be a mapping")
        require(not (self.pretrained and self.overrides), "overrides", self.overrides,
                "cannot change the architecture of pretrained weights (model.pretrained): remove them")
        check_optional_positive_int("force_image_size", self.force_image_size)
        check_optional_positive_int("force_context_length", self.force_context_length)
        check_choice("context_extension", self.context_extension, CONTEXT_EXTENSIONS)
        require(self.context_extension == "interpolate" or self.force_context_length is not None, "context_extension",
                self.context_extension, "needs force_context_length (--force-context-length), the length to stretch to")
        if self.force_patch_dropout is not None:
            check_probability("force_patch_dropout", self.force_patch_dropout)
        for key in ("image_mean", "image_std"):
            value = getattr(self, key)
            require(value is None or (len(value) == 3 and all(math.isfinite(channel) for channel in value)), key,
                    value, "must be 3 numbers (R, G, B) or null")
        require(self.image_std is None or min(self.image_std) > 0, "image_std", self.image_std,
                "must be > 0 in every channel")
        for key in ("image_mean", "image_std"):
            require(not (self.pretrained and getattr(self, key) is not None), key, getattr(self, key),
                    "cannot change the preprocessing of pretrained weights (model.pretrained brings its own): "
                    "remove it")
        for key in ("lock_image_unlocked_groups", "lock_text_unlocked_layers"):
            value = getattr(self, key)
            require(isinstance(value, int) and not isinstance(value, bool) and value >= 0, key, value,
                    "must be an integer >= 0")

    @property
    def label(self) -> str:
        """What the model is called in run names: `name`, else the pretrained checkpoint's file or
        directory name."""
        if self.name is not None:
            return self.name
        return Path(self.pretrained.rstrip("/\\")).name or self.pretrained


@dataclass(kw_only=True)
class LoopConfig:
    """How long to train and in what numeric precision.

    batch_size is per process and per micro-batch, as in open_clip; the global batch of one
    optimiser step is batch_size * accum_freq * world_size, and the loss's negatives span all of it.
    max_steps (optimiser steps) stops the run early when smaller than epochs would.
    precision: fp32; bf16 == amp_bf16 (bf16 autocast, fp32 weights, CPU or CUDA);
    amp == fp16 (fp16 autocast + GradScaler, CUDA only). Losses are computed in fp32 either way.
    threads: torch intra-op threads per process (None: torch's default divided by local ranks).
    deterministic: torch.use_deterministic_algorithms, for bitwise-reproducible runs.
    """

    epochs: int = 5
    max_steps: Optional[int] = None
    batch_size: int = 128
    accum_freq: int = 1
    precision: str = "fp32"
    seed: int = 0
    threads: Optional[int] = None
    deterministic: bool = False

    def __post_init__(self):
        check_positive_int("epochs", self.epochs)
        check_optional_positive_int("max_steps", self.max_steps)
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("accum_freq", self.accum_freq)
        require(self.precision in PRECISIONS, "precision", self.precision, f"must be one of {PRECISIONS}")
        require(isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0, "seed",
                self.seed, "must be an integer >= 0")
        check_optional_positive_int("threads", self.threads)

    @property
    def autocast_dtype(self) -> Optional[str]:
        return {"bf16": "bfloat16", "amp_bf16": "bfloat16", "amp": "float16", "fp16": "float16"}.get(self.precision)

    @property
    def uses_grad_scaler(self) -> bool:
        return self.precision in ("amp", "fp16")


@dataclass(kw_only=True)
class OptimConfig:
    """AdamW with open_clip's weight-decay exclusions, a warmup + cosine schedule and clipping.

    warmup: linear warmup length in optimiser steps. grad_clip_norm: max global L2 norm (None: off).

    The parameter groups (`cliplab.train.step.param_groups`): every group's lr is the schedule's times
    the group's scale. lr_image / lr_text: the peak lr of a tower (with its projection) instead of
    `lr` (its scale is lr_image / lr). layer_decay D (layer_decay_image / _text per tower, else
    layer_decay; None: 1): block i of a tower of L blocks trains at D^(L - i) of the tower's lr, its
    embeddings at D^(L + 1), its final group, the projections, logit scale and heads at D^0 (the
    tower family's `lock_groups`, input to output, are the layers). wd_image / wd_text: the weight
    decay of a tower's decayed tensors instead of `wd`. wd_exclude: regular expressions
    (`re.search`) over parameter names whose tensors get no weight decay, besides the norms,
    biases, embeddings and logit scale / bias that never do.
    """

    lr: float = 2e-3
    wd: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    warmup: int = 100
    lr_scheduler: str = "cosine"
    min_lr: float = 0.0
    grad_clip_norm: Optional[float] = 1.0
    layer_decay: Optional[float] = None
    layer_decay_image: Optional[float] = None
    layer_decay_text: Optional[float] = None
    lr_image: Optional[float] = None
    lr_text: Optional[float] = None
    wd_image: Optional[float] = None
    wd_text: Optional[float] = None
    wd_exclude: tuple[str, ...] = ()

    def __post_init__(self):
        require(isinstance(self.lr, (int, float)) and not isinstance(self.lr, bool) and math.isfinite(self.lr)
                and self.lr > 0, "lr", self.lr, "must be a finite number > 0")
        check_non_negative("wd", self.wd)
        for key in ("beta1", "beta2"):
            value = getattr(self, key)
            require(isinstance(value, (int, float)) and 0 <= value < 1, key, value, "must be in [0, 1)")
        require(isinstance(self.eps, (int, float)) and not isinstance(self.eps, bool) and math.isfinite(self.eps)
                and self.eps > 0, "eps", self.eps, "must be a finite number > 0")
        require(isinstance(self.warmup, int) and not isinstance(self.warmup, bool) and self.warmup >= 0,
                "warmup", self.warmup, "must be an integer >= 0 (steps)")
        require(self.lr_scheduler in LR_SCHEDULERS, "lr_scheduler", self.lr_scheduler,
                f"must be one of {LR_SCHEDULERS}")
        check_non_negative("min_lr", self.min_lr)
        require(self.min_lr <= self.lr, "min_lr", self.min_lr, f"must be <= lr ({self.lr})")
        if self.grad_clip_norm is not None:
            require(isinstance(self.grad_clip_norm, (int, float)) and self.grad_clip_norm > 0,
                    "grad_clip_norm", self.grad_clip_norm, "must be > 0 or null")
        for key in ("layer_decay", "layer_decay_image", "layer_decay_text"):
            value = getattr(self, key)
            if value is not None:  # 1: no decay
                check_number(key, value, low=0.0, high=1.0, low_inclusive=False)
        for key in ("lr_image", "lr_text"):
            if getattr(self, key) is not None:
                check_number(key, getattr(self, key), low=0.0, low_inclusive=False)
        for key in ("wd_image", "wd_text"):
            if getattr(self, key) is not None:
                check_non_negative(key, getattr(self, key))
        self.wd_exclude = tuple(self.wd_exclude)
        for pattern in self.wd_exclude:
            require(isinstance(pattern, str) and pattern != "", "wd_exclude", pattern,
                    "must hold regular expressions over parameter names")
            try:
                re.compile(pattern)
            except re.error as error:
                raise ConfigError("wd_exclude", pattern, f"must be a regular expression ({error})") from None


@dataclass(kw_only=True)
class LoraConfig:
    """LoRA adapters through peft (`cliplab.train.setup.lora`, `cliplab.models.lora`); off without a rank.

    rank: the adapters' rank r (None: no LoRA). alpha: their scale is alpha / r (None: alpha = r).
    dropout: on the adapters' input. targets: module-name suffixes of the layers to adapt, as peft's
    `target_modules` takes them (None: each tower family's defaults: attention q/k/v and output,
    MLP in and out, a conv tower's convolutions). image_only / text_only: adapt one tower; the other
    trains (or not) as --lock-* says. The adapted towers' own weights are frozen.
    """

    rank: Optional[int] = None
    alpha: Optional[float] = None
    dropout: float = 0.0
    targets: Optional[tuple[str, ...]] = None
    image_only: bool = False
    text_only: bool = False

    def __post_init__(self):
        require(self.rank is None or (is_int(self.rank) and self.rank > 0), "rank", self.rank,
                "must be a positive integer (the adapters' rank), or null for no LoRA")
        if self.alpha is not None:
            check_number("alpha", self.alpha, low=0.0, low_inclusive=False)
        check_probability("dropout", self.dropout)
        if self.targets is not None:
            self.targets = tuple(self.targets)
            require(len(self.targets) > 0 and all(isinstance(name, str) and name.strip() == name and name
                                                  for name in self.targets), "targets", self.targets,
                    "must be module-name suffixes (e.g. attn.qkv, mlp.fc), or null for the defaults")
        require(not (self.image_only and self.text_only), "text_only", self.text_only,
                "cannot be combined with lora.image_only: leave both off to adapt both towers")
        if self.rank is None:
            for key, unset in (("alpha", None), ("dropout", 0.0), ("targets", None), ("image_only", False),
                               ("text_only", False)):
                require(getattr(self, key) == unset, key, getattr(self, key),
                        "only applies with lora.rank (--lora-rank)")

    @property
    def enabled(self) -> bool:
        return self.rank is not None

    @property
    def sides(self) -> tuple[str, ...]:
        """The towers adapted: "vision" and/or "text"."""
        return ("vision",) if self.image_only else ("text",) if self.text_only else ("vision", "text")


@dataclass(kw_only=True)
class EmaConfig:
    """An exponential moving average of the trained weights (`cliplab.train.step.ema`); off without a decay.

    decay: d in (0, 1), each step ema <- d * ema + (1 - d) * weights (None: no EMA). warmup: the
    decay rises linearly from 0 over the first `warmup` optimiser steps (d_t = d * min(1, t /
    warmup) at step t), so that the average soon forgets the starting weights. cpu: keep the
    average in host memory instead of on the device.
    """

    decay: Optional[float] = None
    warmup: int = 0
    cpu: bool = False

    def __post_init__(self):
        require(self.decay is None or (isinstance(self.decay, (int, float)) and not isinstance(self.decay, bool)
                                       and 0 < self.decay < 1), "decay", self.decay,
                "must be in (0, 1) (e.g. 0.9999), or null for no EMA")
        check_int_at_least("warmup", self.warmup, 0)
        if self.decay is None:
            for key, unset in (("warmup", 0), ("cpu", False)):
                require(getattr(self, key) == unset, key, getattr(self, key),
                        "only applies with ema.decay (--ema-decay)")

    @property
    def enabled(self) -> bool:
        return self.decay is not None


@dataclass(kw_only=True)
class LossConfig:
    """Which contrastive loss and its distributed options (open_clip's meanings).

    siglip: sigmoid loss instead of softmax. local_loss / gather_with_grad: see open_clip ClipLoss.
    dist_impl: SigLIP's exchange ('bidir', 'shift', 'reduce', 'gather'; None: the loss's default).
    tiled_loss / tile_size: the memory-efficient tiled variants. max_logit_scale: the clamp used by
    the loss and applied to the log-scale parameter after every step (ln 100 by default).
    """

    siglip: bool = False
    local_loss: bool = False
    gather_with_grad: bool = False
    dist_impl: Optional[str] = None
    tiled_loss: bool = False
    tile_size: Optional[int] = None
    max_logit_scale: float = 100.0
    coca_caption_loss_weight: float = 2.0
    coca_contrastive_loss_weight: float = 1.0

    def __post_init__(self):
        if self.dist_impl is not None:
            require(self.dist_impl in SIGLIP_DIST_IMPLS, "dist_impl", self.dist_impl,
                    f"must be one of {SIGLIP_DIST_IMPLS} or null")
            require(self.siglip, "dist_impl", self.dist_impl, "only applies with siglip: true")
        require(not (self.local_loss and not self.gather_with_grad), "local_loss", self.local_loss,
                "needs gather_with_grad: true (without it the gradients are wrong under DDP)")
        check_optional_positive_int("tile_size", self.tile_size)
        require(self.tile_size is None or self.tiled_loss, "tile_size", self.tile_size,
                "only applies with tiled_loss: true")
        require(isinstance(self.max_logit_scale, (int, float)) and math.isfinite(self.max_logit_scale)
                and self.max_logit_scale > 1, "max_logit_scale", self.max_logit_scale, "must be a finite number > 1")
        check_non_negative("coca_caption_loss_weight", self.coca_caption_loss_weight)
        check_non_negative("coca_contrastive_loss_weight", self.coca_contrastive_loss_weight)


@dataclass(kw_only=True)
class CheckpointConfig:
    """When to save and what to resume from.

    save_frequency: every N epochs (0: never at epoch ends). save_every_steps: every N optimiser
    steps (None: off). keep_checkpoints: how many step directories to keep (the newest).
    resume: 'latest' (the run's newest complete checkpoint; starts fresh when there is none) or a
    checkpoint directory.
    allow_config_change: dotted keys (or sections) a resume may change although they affect training
        (`cliplab.train.config.history`); the others stop the run at start-up, naming each change.
    requeue_exit_code: the exit status of `cliplab train` when a signal (SIGTERM, SIGUSR1, SIGINT)
        stopped it after saving (`cliplab.train.preemption`); 3 to 125, so that it is told apart
        from 0 (done), 1 (failed) and 2 (bad input) and from a death by signal (128 + N).
    """

    save_frequency: int = 1
    save_every_steps: Optional[int] = None
    keep_checkpoints: int = 2
    resume: Optional[str] = None
    allow_config_change: tuple[str, ...] = ()
    requeue_exit_code: int = 3

    def __post_init__(self):
        require(isinstance(self.save_frequency, int) and not isinstance(self.save_frequency, bool)
                and self.save_frequency >= 0, "save_frequency", self.save_frequency, "must be an integer >= 0")
        check_optional_positive_int("save_every_steps", self.save_every_steps)
        check_positive_int("keep_checkpoints", self.keep_checkpoints)
        require(self.resume is None or (isinstance(self.resume, str) and self.resume != ""), "resume",
                self.resume, "must be 'latest' or a checkpoint path")
        require(isinstance(self.requeue_exit_code, int) and not isinstance(self.requeue_exit_code, bool)
                and REQUEUE_EXIT_CODES[0] <= self.requeue_exit_code <= REQUEUE_EXIT_CODES[1], "requeue_exit_code",
                self.requeue_exit_code, f"must be an integer from {REQUEUE_EXIT_CODES[0]} to {REQUEUE_EXIT_CODES[1]}")
        self.allow_config_change = tuple(self.allow_config_change)


def is_one_path_component(name: Any) -> bool:
    """Whether `name` names an entry of a directory: a directory of its own, not the parent or itself."""
    separators = {"/", "\0"} | ({os.sep, os.altsep} - {None})
    return isinstance(name, str) and name not in ("", ".", "..") and not any(char in name for char in separators)


@dataclass(kw_only=True)
class LoggingConfig:
    """Where the run directory goes and how often to log.

    The run directory is `<logs>/<name>`; name defaults to `<date>-<time>-<model>`.
    log_every_n_steps: a metrics.jsonl record, and a console line where no progress bar is drawn.
    progress_bar: a tqdm bar on a terminal (the console lines replace it in a log file).
    tensorboard / wandb: the metric sinks besides metrics.jsonl (`metric_sinks`); wandb needs the
        `wandb` extra and logs to the W&B project `wandb_project`.
    """

    logs: str = "./logs"
    name: Optional[str] = None
    log_every_n_steps: int = 10
    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "cliplab"
    progress_bar: bool = True

    def __post_init__(self):
        require(isinstance(self.logs, str) and self.logs != "", "logs", self.logs, "must be a directory path")
        require(self.name is None or is_one_path_component(self.name), "name", self.name,
                "must be one path component (not empty, '.' or '..', without '/' or a NUL character)")
        check_positive_int("log_every_n_steps", self.log_every_n_steps)
        require(isinstance(self.wandb_project, str) and self.wandb_project != "", "wandb_project",
                self.wandb_project, "must be a W&B project name")
        require(not self.wandb or importlib.util.find_spec("wandb") is not None, "wandb", self.wandb,
                "needs the wandb package (pip install 'cliplab[wandb]')")


@dataclass(kw_only=True)
class EvalConfig:
    """Evaluation during and after training.

    zeroshot_frequency: zero-shot + retrieval every N epochs (0: only at the end, if eval_at_end).
    zeroshot_num_samples: evaluate on the first N test images (None: the whole test split).
    retrieval_num_samples: image-caption pairs for retrieval metrics (the first ones of the val data,
        or of the captioned Fashion-MNIST test split).
    batch_size: images per evaluation forward.
    zeroshot_dataset: the dataset zero-shot runs on (its test split), any `cliplab benchmark` reads:
        fashion-mnist, a CLIP_benchmark webdataset directory, an ImageFolder tree, a labelled CSV/TSV
        or parquet file (None: Fashion-MNIST's test split when training on it, else no zero-shot).
    """

    zeroshot_frequency: int = 0
    eval_at_end: bool = True
    zeroshot_num_samples: Optional[int] = None
    retrieval_num_samples: int = 1000
    batch_size: int = 500
    zeroshot_dataset: Optional[str] = None

    def __post_init__(self):
        require(isinstance(self.zeroshot_frequency, int) and not isinstance(self.zeroshot_frequency, bool)
                and self.zeroshot_frequency >= 0, "zeroshot_frequency", self.zeroshot_frequency,
                "must be an integer >= 0")
        check_optional_positive_int("zeroshot_num_samples", self.zeroshot_num_samples)
        check_positive_int("retrieval_num_samples", self.retrieval_num_samples)
        check_positive_int("batch_size", self.batch_size)
        require(self.zeroshot_dataset is None or (isinstance(self.zeroshot_dataset, str) and self.zeroshot_dataset),
                "zeroshot_dataset", self.zeroshot_dataset, "must name a dataset (or be null)")


@dataclass(kw_only=True)
class GuardConfig:
    """Non-finite loss handling: skip the step; `max_nonfinite_steps` in a row stop the run."""

    max_nonfinite_steps: int = 5

    def __post_init__(self):
        check_positive_int("max_nonfinite_steps", self.max_nonfinite_steps)


@dataclass(kw_only=True)
class DistributedConfig:
    """Process group settings. backend None: nccl with CUDA, gloo otherwise.

    find_unused_parameters: DDP's option, for models with trainable parameters that some steps
    leave without a gradient.
    fsdp: shard parameters, gradients and optimiser state over the ranks with FSDP2 (`fully_shard`)
    instead of DDP's whole copies (`cliplab.train.parallel.build`).
    """

    backend: Optional[str] = None
    timeout_s: int = 1800
    find_unused_parameters: bool = False
    fsdp: bool = False

    def __post_init__(self):
        require(self.backend in (None, "gloo", "nccl"), "backend", self.backend, "must be gloo, nccl or null")
        check_positive_int("timeout_s", self.timeout_s)


def names_config_key(config_class: type, dotted: str) -> bool:
    """Whether `dotted` names a section, a key, or a part of a mapping-valued key (model.overrides.x)
    of the config dataclass `config_class`."""
    node = config_class
    for part in dotted.split(".") if isinstance(dotted, str) else [None]:
        fields = {item.name: item for item in dataclasses.fields(node)}
        if part not in fields:
            return False
        annotation = typing.get_type_hints(node)[part]
        options = [option for option in typing.get_args(annotation) if option is not type(None)] or [annotation]
        node = next((option for option in options if dataclasses.is_dataclass(option)), None)
        if node is None:
            return True  # a key: what follows names a part of its value
    return True


def has_retrieval_data(data: DataConfig) -> bool:
    """Whether retrieval has image-caption pairs: a built-in source's (Fashion-MNIST's captioned test
    split), or data.val_data."""
    return data_source(data.dataset_type).built_in or data.val_data is not None


def has_evaluation_data(data: DataConfig, evaluation: EvalConfig | None = None) -> bool:
    """Whether evaluation has data: Fashion-MNIST brings its test split; csv, webdataset and parquet
    runs evaluate on data.val_data (retrieval), and zero-shot on eval.zeroshot_dataset when set."""
    return has_retrieval_data(data) or (evaluation is not None and evaluation.zeroshot_dataset is not None)


@dataclass(kw_only=True)
class TrainConfig:
    """The whole experiment. Each field is a section of the YAML/JSON file with the same name."""

    model: ModelSetupConfig = field(default_factory=ModelSetupConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    objectives: ObjectivesConfig = field(default_factory=ObjectivesConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    guards: GuardConfig = field(default_factory=GuardConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def __post_init__(self):
        require(not (self.checkpoint.resume == "latest" and self.logging.name is None), "checkpoint.resume",
                self.checkpoint.resume, "needs logging.name (--name): 'latest' is looked up in <logs>/<name>")
        data_type = self.data.dataset_type
        require(data_source(data_type).built_in or self.data.train_data is not None, "data.train_data",
                self.data.train_data, f"must be set for dataset_type {data_type!r} (--train-data)")
        for key in self.checkpoint.allow_config_change:
            require(names_config_key(TrainConfig, key), "checkpoint.allow_config_change", key,
                    "must name config keys or sections (e.g. optim.lr, loop, model.overrides)")
        require(not self.eval.zeroshot_frequency or has_evaluation_data(self.data, self.eval),
                "eval.zeroshot_frequency", self.eval.zeroshot_frequency, f"needs evaluation data: a {data_type} run "
                "evaluates on data.val_data (--val-data) or eval.zeroshot_dataset (--zeroshot-dataset), neither of "
                "which is set (or use --zeroshot-frequency 0)")

    @property
    def evaluates_at_end(self) -> bool:
        """eval.eval_at_end where there is evaluation data; a run without any (a csv or webdataset run
        without val_data) skips the final evaluation, as open_clip does, with a note at start-up."""
        return self.eval.eval_at_end and has_evaluation_data(self.data, self.eval)

"""`cliplab train`: parse flags into config overrides, build the TrainConfig, train, report.

Every flag maps to one dotted config key (FLAGS below); a flag left out leaves the key to the config
file (`--config`) or the default. open_clip's flags keep their names and meaning.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable

from cliplab.data.config import DATASET_TYPES
from cliplab.data.sources import SOURCES
from cliplab.precision_names import PRECISIONS
from cliplab.train.config import CONTEXT_EXTENSIONS, LR_SCHEDULERS, SIGLIP_DIST_IMPLS

EPILOG = """\
examples:
  # the default: tiny model on the built-in Fashion-MNIST captions, evaluated at the end
  cliplab train
  # an experiment file with two overrides
  cliplab train --config configs/tiny-fashion-mnist.yaml --epochs 2 --name try1
  # your own captioned images (tab-separated manifest with columns filepath, title)
  cliplab train --dataset-type csv --train-data train.tsv --val-data val.tsv --model tiny-vit
  # two processes (gloo on CPU, NCCL on GPU); resume the run if it was interrupted.
  # The "--" ends torchrun's own options: without it torchrun rejects --logs (a prefix of its --logs-specs).
  torchrun --nproc_per_node 2 -m cliplab -- train --logs runs --name ddp --resume latest --local-loss --gather-with-grad
  # negatives over 4 x 64 samples per process, with exact recomputation
  cliplab train --batch-size 64 --accum-freq 4
  # fine-tune a pretrained checkpoint (here an open_clip hub directory) with its tokenizer and preprocessing
  cliplab train --pretrained open_clip_hub_dir --dataset-type csv --train-data train.tsv --lr 1e-5 --lock-image
  # fine-tune with LoRA adapters of rank 8 and an EMA of the weights; see the parameter groups first
  cliplab train --pretrained open_clip_hub_dir --dataset-type csv --train-data train.tsv --lora-rank 8 \
      --ema-decay 0.999 --layer-decay 0.75 --dry-run
"""


@dataclass(frozen=True)
class Flag:
    name: str  # e.g. "--batch-size"
    key: str | tuple[str, ...]  # dotted config key, e.g. "loop.batch_size" (a tuple: see `keys`)
    help: str
    type: Callable[[str], Any] | None = str
    choices: tuple | None = None
    boolean: bool = False
    nargs: int | None = None  # values the flag takes (None: one)
    metavar: str | None = None  # None: the flag's name in capitals (--batch-size BATCH_SIZE), as open_clip shows
    default: str | None = None  # words for the default where its value alone does not say (None: the value)

    @property
    def keys(self) -> tuple[str, ...]:
        """The dotted keys the flag sets: one, or several when `key` is a tuple (then `type` returns one
        value per key)."""
        return (self.key,) if isinstance(self.key, str) else self.key

    @property
    def dest(self) -> str:
        return "flag__" + "__".join(self.keys).replace(".", "__")

    @property
    def section(self) -> str:
        """The config section of the flag's (first) key: what groups it in --help."""
        return self.keys[0].split(".")[0]

    @property
    def shown_metavar(self) -> str | None:
        if self.choices is not None:
            return None  # argparse then lists the choices
        return self.metavar or self.name.lstrip("-").replace("-", "_").upper()


def _optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "null") else int(text)


def _optional_float(text: str) -> float | None:
    return None if text.lower() in ("none", "null", "off") else float(text)


def _labels(text: str) -> tuple[int, ...]:
    """'0,1,2' -> (0, 1, 2)."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integer labels, got {text!r}") from None


def _one(text: str) -> tuple[str]:
    return (text,)


def _comma_separated(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


REPORT_TO_CHOICES = ("tensorboard", "wandb", "all", "none")
REPORT_TO_KEYS = ("logging.tensorboard", "logging.wandb")


def _report_to(text: str) -> tuple[bool, bool]:
    """open_clip's --report-to: a comma-separated list of integrations, here tensorboard and wandb
    ("all": both; "none" or "": neither). Returns the values of REPORT_TO_KEYS."""
    integrations = {part.strip().lower() for part in text.split(",")} - {""}
    unknown = integrations - set(REPORT_TO_CHOICES)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"cannot report to {', '.join(sorted(unknown))}: choose from tensorboard, wandb, all, none")
    if "none" in integrations and len(integrations) > 1:
        raise argparse.ArgumentTypeError(f"'none' cannot be combined with other integrations, got {text!r}")
    everything = "all" in integrations
    return everything or "tensorboard" in integrations, everything or "wandb" in integrations


FLAGS: tuple[Flag, ...] = (
    # data (open_clip)
    Flag("--train-data", "data.train_data", "training data, by --dataset-type: " + "; ".join(
         f"{source.name}: {source.location}" for source in SOURCES if source.trains)
         + "; several locations of a source that mixes, joined by '::', are one mixture", metavar="PATH",
         default="the built-in Fashion-MNIST: system copy, cache or download"),
    Flag("--train-data-upsampling-factors", "data.train_data_upsampling_factors", "one factor per '::' source of "
         "--train-data, '::'-separated (e.g. 1::4): how often each sample of a source is drawn relative to one of "
         "factor 1 (webdataset: with --dataset-resampled)", metavar="FACTORS", default="1 each"),
    Flag("--val-data", "data.val_data", "evaluation data (same formats as --train-data)", metavar="PATH",
         default="none; a Fashion-MNIST run evaluates on its test split"),
    Flag("--dataset-type", "data.dataset_type", "format of the data", choices=DATASET_TYPES),
    Flag("--csv-img-key", "data.csv_img_key", "image path column of a csv manifest"),
    Flag("--csv-caption-key", "data.csv_caption_key", "caption column of a csv manifest (a cell may hold a JSON "
         "list of captions)"),
    Flag("--csv-separator", "data.csv_separator", "column separator of a csv manifest", default="tab"),
    Flag("--csv-label-key", "data.csv_label_key", "integer class label column of a csv manifest", default="none"),
    Flag("--parquet-image-key", "data.parquet_image_key", "image column of parquet data: encoded bytes or "
         "{bytes, path} structs", default="the first of image, jpg, png"),
    Flag("--parquet-caption-key", "data.parquet_caption_key", "caption column of parquet data (strings or lists "
         "of strings)", default="the first of caption, text, txt"),
    Flag("--wds-caption-key", "data.wds_caption_key", "webdataset: the key of each sample's .json holding its "
         "caption or list of captions", metavar="KEY", default="none: the .txt file"),
    Flag("--parquet-label-key", "data.parquet_label_key", "integer class label column of parquet data",
         default="none"),
    Flag("--train-num-samples", "data.train_num_samples", "samples per epoch", type=int,
         default="all; webdataset: the counts cliplab shards or img2dataset wrote next to the shards"),
    Flag("--val-num-samples", "data.val_num_samples", "samples in webdataset validation shards", type=int,
         default="as for --train-num-samples"),
    Flag("--train-classes", "data.train_classes", "train only on the samples of these comma-separated class labels "
         "(Fashion-MNIST, or csv with --csv-label-key)", type=_labels, metavar="LABELS", default="all"),
    Flag("--dataset-resampled", "data.dataset_resampled", "webdataset: draw shards with replacement",
         boolean=True),
    Flag("--workers", "data.workers", "data loader worker processes per rank", type=_optional_int,
         default="the source's: 0 for fashion-mnist (decoded in memory), 2 for the file sources"),
    # model (open_clip)
    Flag("--model", "model.name", "model name (cliplab.list_models(): cliplab's and open_clip's) or model JSON "
         "path; with --pretrained: the architecture of a checkpoint that carries none, or of an open_clip "
         "pretrained tag (cliplab.list_pretrained())", metavar="NAME",
         default="tiny; with --pretrained: the checkpoint's own"),
    Flag("--pretrained", "model.pretrained", "start from this checkpoint (any format cliplab.load reads: cliplab "
         "run, bundle or state dict, open_clip hub dir or epoch_K.pt, OpenAI .pt, Hugging Face dir, hf-hub:, "
         "local-dir:, or an open_clip pretrained tag with --model, e.g. --model ViT-B-32 --pretrained "
         "laion2b_s34b_b79k) with its tokenizer and preprocessing", metavar="PATH",
         default="none: random initialisation"),
    Flag("--tokenizer", "model.tokenizer", "tokenizer.json, tokenizer directory or open_clip model name",
         metavar="TOKENIZER", default="the resumed or pretrained checkpoint's, the open_clip model's own, else "
         "one trained on the captions"),
    Flag("--force-image-size", "model.force_image_size", "input image side instead of the model config's (the "
         "preprocessing follows; with --pretrained the learned position grids are resized)", type=int, metavar="SIZE",
         default="the model config's"),
    Flag("--force-context-length", "model.force_context_length", "text context length instead of the model "
         "config's (the tokenizer follows; with --pretrained the text positions are resized by --context-extension)",
         type=int, metavar="LENGTH", default="the model config's"),
    Flag("--context-extension", "model.context_extension", "how --force-context-length resizes pretrained text "
         "positions: interpolate (open_clip's, linear) or longclip (the first 20 kept, the rest stretched)",
         choices=CONTEXT_EXTENSIONS),
    Flag("--force-patch-dropout", "model.force_patch_dropout", "ViT patch dropout while training instead of the "
         "model config's (also with --pretrained)", type=float, metavar="P", default="the model config's"),
    Flag("--image-mean", "model.image_mean", "per-channel normalisation mean, R G B", type=float, nargs=3,
         metavar="M", default="the model config's; OpenAI CLIP's for the tiny models on csv, webdataset or "
         "parquet data"),
    Flag("--image-std", "model.image_std", "per-channel normalisation std, R G B", type=float, nargs=3,
         metavar="S", default="as --image-mean"),
    Flag("--lock-image", "model.lock_image", "freeze the image tower", boolean=True),
    Flag("--lock-image-unlocked-groups", "model.lock_image_unlocked_groups",
         "leave the last N image-tower groups trainable", type=int),
    Flag("--lock-image-freeze-bn-stats", "model.lock_image_freeze_bn_stats",
         "also freeze the BatchNorm running statistics of the locked groups (the locked parameters, norms "
         "included, are frozen by --lock-image)", boolean=True),
    Flag("--lock-text", "model.lock_text", "freeze the text tower", boolean=True),
    Flag("--lock-text-unlocked-layers", "model.lock_text_unlocked_layers",
         "leave the last N text-tower layers trainable", type=int),
    Flag("--lock-text-freeze-layer-norm", "model.lock_text_freeze_layer_norm",
         "also freeze the layer norms of the locked layers", boolean=True),
    Flag("--grad-checkpointing", "model.grad_checkpointing", "recompute activations in backward", boolean=True),
    Flag("--torchcompile", "model.torchcompile", "torch.compile the model", boolean=True),
    # loop (open_clip + --max-steps)
    Flag("--batch-size", "loop.batch_size", "batch size per process (per micro-batch)", type=int),
    Flag("--epochs", "loop.epochs", "epochs to train", type=int),
    Flag("--max-steps", "loop.max_steps", "stop after N optimiser steps", type=_optional_int,
         default="none: every step of --epochs"),
    Flag("--accum-freq", "loop.accum_freq", "micro-batches per optimiser step (negatives span all of them)",
         type=int),
    Flag("--precision", "loop.precision", "fp32; bf16 == amp_bf16 (autocast); amp == fp16 (CUDA, GradScaler)",
         choices=PRECISIONS),
    Flag("--seed", "loop.seed", "random seed", type=int),
    Flag("--threads", "loop.threads", "torch threads per process", type=_optional_int,
         default="torch's, divided by the processes per node"),
    Flag("--deterministic", "loop.deterministic", "use deterministic algorithms", boolean=True),
    # optimiser (open_clip + clipping)
    Flag("--lr", "optim.lr", "peak learning rate", type=float),
    Flag("--wd", "optim.wd", "AdamW weight decay (not on biases, norms, embeddings, logit scale)", type=float),
    Flag("--beta1", "optim.beta1", "AdamW beta1", type=float),
    Flag("--beta2", "optim.beta2", "AdamW beta2", type=float),
    Flag("--eps", "optim.eps", "AdamW epsilon", type=float),
    Flag("--warmup", "optim.warmup", "linear warmup steps", type=int),
    Flag("--lr-scheduler", "optim.lr_scheduler", "schedule after warmup", choices=LR_SCHEDULERS),
    Flag("--grad-clip-norm", "optim.grad_clip_norm", "clip the gradient norm ('none': off)", type=_optional_float),
    Flag("--layer-decay", "optim.layer_decay", "layer-wise lr decay D in (0, 1]: block i of L trains at lr x D^(L - i), "
         "the embeddings at D^(L + 1), heads and logit scale at D^0", type=_optional_float, metavar="D",
         default="none: every layer at lr"),
    Flag("--layer-decay-image", "optim.layer_decay_image", "--layer-decay of the image tower", type=_optional_float,
         metavar="D", default="--layer-decay"),
    Flag("--layer-decay-text", "optim.layer_decay_text", "--layer-decay of the text tower", type=_optional_float,
         metavar="D", default="--layer-decay"),
    Flag("--lr-image", "optim.lr_image", "peak learning rate of the image tower and its projection",
         type=_optional_float, metavar="LR", default="--lr"),
    Flag("--lr-text", "optim.lr_text", "peak learning rate of the text tower and its projection",
         type=_optional_float, metavar="LR", default="--lr"),
    Flag("--wd-image", "optim.wd_image", "weight decay of the image tower and its projection", type=_optional_float,
         metavar="WD", default="--wd"),
    Flag("--wd-text", "optim.wd_text", "weight decay of the text tower and its projection", type=_optional_float,
         metavar="WD", default="--wd"),
    Flag("--wd-exclude", "optim.wd_exclude", "no weight decay on parameters whose name matches this regular "
         "expression (re.search; '|' for several), besides norms, biases, embeddings and logit scale", type=_one,
         metavar="PATTERN", default="none"),
    # fine-tuning: LoRA (peft) and the EMA of the weights
    Flag("--lora-rank", "lora.rank", "add LoRA adapters of this rank (peft) and train them instead of the towers' "
         "weights", type=_optional_int, metavar="R", default="none: no LoRA"),
    Flag("--lora-alpha", "lora.alpha", "LoRA scale alpha: the update is (alpha / R) B A", type=_optional_float,
         metavar="ALPHA", default="R"),
    Flag("--lora-dropout", "lora.dropout", "dropout on the LoRA adapters' input", type=float, metavar="P"),
    Flag("--lora-targets", "lora.targets", "comma-separated module-name suffixes of the layers to adapt (peft's "
         "target_modules)", type=_comma_separated, metavar="NAMES", default="the tower families': attention q/k/v and output, "
         "MLP in and out (attn.qkv, attn.out, mlp.fc, mlp.proj ...), a conv tower's convolutions"),
    Flag("--lora-image-only", "lora.image_only", "adapt the image tower only", boolean=True),
    Flag("--lora-text-only", "lora.text_only", "adapt the text tower only", boolean=True),
    Flag("--ema-decay", "ema.decay", "keep an exponential moving average of the weights with this decay in (0, 1), "
         "evaluated beside the model (ema/ metrics)", type=_optional_float, metavar="DECAY", default="none: no EMA"),
    Flag("--ema-warmup", "ema.warmup", "raise the EMA's decay linearly from 0 over the first N steps", type=int,
         metavar="STEPS"),
    Flag("--ema-cpu", "ema.cpu", "keep the EMA in host memory", boolean=True),
    # loss (open_clip + tiled)
    Flag("--siglip", "loss.siglip", "sigmoid loss (for siglip models)", boolean=True),
    Flag("--local-loss", "loss.local_loss", "local rows against global columns (needs --gather-with-grad)",
         boolean=True),
    Flag("--gather-with-grad", "loss.gather_with_grad", "all-gather features with gradient", boolean=True),
    Flag("--dist-impl", "loss.dist_impl", "SigLIP exchange across ranks", choices=SIGLIP_DIST_IMPLS,
         default="the loss's, bidir"),
    Flag("--tiled-loss", "loss.tiled_loss", "memory-efficient tiled loss", boolean=True),
    Flag("--tile-size", "loss.tile_size", "rows per tile of the tiled loss", type=int, default="the loss's"),
    Flag("--coca-caption-loss-weight", "loss.coca_caption_loss_weight", "weight of CoCa's captioning loss",
         type=float),
    Flag("--coca-contrastive-loss-weight", "loss.coca_contrastive_loss_weight", "weight of CoCa's contrastive loss",
         type=float),
    # checkpoints (open_clip + step checkpoints)
    Flag("--resume", "checkpoint.resume", "'latest' (this run's newest checkpoint) or a checkpoint directory",
         metavar="{latest,DIR}", default="none: a fresh run"),
    Flag("--save-frequency", "checkpoint.save_frequency", "checkpoint every N epochs (0: off)", type=int),
    Flag("--save-every-steps", "checkpoint.save_every_steps", "checkpoint every N steps", type=_optional_int,
         default="off"),
    Flag("--keep-checkpoints", "checkpoint.keep_checkpoints", "how many checkpoints to keep", type=int),
    Flag("--allow-config-change", "checkpoint.allow_config_change", "comma-separated config keys or sections a "
         "resume may change although they affect training (e.g. optim.lr,loop.epochs); other changes are refused",
         type=_comma_separated, metavar="KEY[,KEY...]"),
    Flag("--requeue-exit-code", "checkpoint.requeue_exit_code", "exit status after a SIGTERM, SIGUSR1 or SIGINT "
         "stopped the run with a checkpoint of its last step (3 to 125)", type=int, metavar="N"),
    # logging and evaluation (open_clip)
    Flag("--logs", "logging.logs", "parent directory of run directories", metavar="DIR"),
    Flag("--name", "logging.name", "run name", metavar="NAME", default="date-time-model-lr-batch"),
    Flag("--log-every-n-steps", "logging.log_every_n_steps", "a metrics.jsonl record every N steps, and a console "
         "line where no bar is drawn", type=int),
    Flag("--tensorboard", "logging.tensorboard", "write TensorBoard event files", boolean=True),
    Flag("--report-to", REPORT_TO_KEYS, "where metrics go besides metrics.jsonl, comma-separated: tensorboard, "
         "wandb, all, or none ('' too)", type=_report_to, metavar="{tensorboard,wandb,all,none}",
         default="tensorboard"),
    Flag("--wandb-project-name", "logging.wandb_project", "W&B project of --report-to wandb", metavar="NAME"),
    Flag("--progress-bar", "logging.progress_bar", "a tqdm bar on a terminal; off, or in a log file, a plain line "
         "every --log-every-n-steps instead", boolean=True),
    Flag("--zeroshot-frequency", "eval.zeroshot_frequency", "evaluate every N epochs (0: only at the end)",
         type=int),
    Flag("--zeroshot-dataset", "eval.zeroshot_dataset", "zero-shot on this dataset's test split (any cliplab "
         "benchmark dataset; default: Fashion-MNIST's when training on it)", metavar="DATASET"),
    # guards and distributed
    Flag("--max-nonfinite-steps", "guards.max_nonfinite_steps", "stop after N non-finite steps in a row",
         type=int),
    Flag("--dist-backend", "distributed.backend", "process group backend", choices=("gloo", "nccl"),
         default="nccl on GPU, else gloo"),
    Flag("--fsdp", "distributed.fsdp", "shard parameters, gradients and optimiser state (FSDP2) instead of DDP",
         boolean=True),
)


# --help's groups, in the order shown: config section -> title.
HELP_GROUPS = {
    "data": "data", "model": "model", "optim": "optimisation", "lora": "fine-tuning", "ema": "fine-tuning",
    "loop": "training loop", "guards": "training loop",
    "loss": "loss", "distributed": "distributed", "checkpoint": "checkpoints", "logging": "logging",
    "eval": "evaluation",
}
USAGE = "cliplab train [--config FILE] [--set KEY=VALUE] [--FLAG VALUE ...]"
DESCRIPTION = """\
Train a CLIP, SigLIP or CoCa model. With no arguments: the tiny model on the built-in Fashion-MNIST
captions, evaluated zero-shot at the end. Each flag sets the config key shown in brackets; a value
comes from, last one winning: the defaults, the --config file, --set KEY=VALUE, the flags."""


def shown_default(flag: Flag, defaults: Any) -> str:
    """The default of `flag` as --help shows it: its words, else the value of its key in `defaults`
    (a TrainConfig): on/off, none, numbers as written, whitespace quoted."""
    if flag.default is not None:
        return flag.default
    section, key = flag.keys[0].split(".")
    value = getattr(getattr(defaults, section), key)
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and (not value or value.strip() != value):
        return repr(value)
    return str(value)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from cliplab.train.config import TrainConfig  # dataclasses only: --help stays free of torch

    parser = subparsers.add_parser("train", help="train a CLIP-family model", usage=USAGE, description=DESCRIPTION,
                                   epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    config = parser.add_argument_group("configuration")
    config.add_argument("--config", metavar="FILE", help="YAML or JSON experiment config (sections as in "
                        "docs/training.md)")
    config.add_argument("--set", dest="set_overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key, e.g. --set optim.beta2=0.95 (repeatable)")
    config.add_argument("--dry-run", action="store_true",
                        help="build the model (adapters too) and the optimiser, print the model's lines and every "
                             "parameter group, and exit: nothing is trained or written")
    groups = {title: parser.add_argument_group(title) for title in dict.fromkeys(HELP_GROUPS.values())}
    defaults = TrainConfig()
    for flag in FLAGS:
        shown = f"{flag.help} (default: {shown_default(flag, defaults)}) [{', '.join(flag.keys)}]".replace("%", "%%")
        group = groups[HELP_GROUPS[flag.section]]
        if flag.boolean:
            group.add_argument(flag.name, dest=flag.dest, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=shown)
        else:
            group.add_argument(flag.name, dest=flag.dest, type=flag.type, choices=flag.choices, nargs=flag.nargs,
                               metavar=flag.shown_metavar, default=argparse.SUPPRESS, help=shown)
    parser.set_defaults(run=run)
    return parser


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Dotted key -> value: --set pairs first, then the explicit flags (which win)."""
    from cliplab.train.config.io import parse_override

    overrides: dict[str, Any] = {}
    for text in args.set_overrides:
        key, value = parse_override(text)
        overrides[key] = value
    flags = {flag.dest: flag for flag in FLAGS}
    for name, value in vars(args).items():
        if name in flags:
            flag = flags[name]
            overrides.update(zip(flag.keys, value) if len(flag.keys) > 1 else [(flag.key, value)])
    return overrides


def run(args: argparse.Namespace) -> int:
    """0 when the run finished; `checkpoint.requeue_exit_code` when a signal stopped it after saving."""
    from cliplab.train import resolve_config, train

    config = resolve_config(args.config, overrides_from_args(args))
    if args.dry_run:
        from cliplab.train.dry_run import dry_run

        print("\n".join(dry_run(config)))
        return 0
    result = train(config)
    return 0 if result.preemption is None else result.preemption.exit_code


"""Building the pieces a run needs from its config: model, tokenizer, transforms, loss, precision.

Each builder takes the config section it needs and returns one object; `loop.py` calls them in
order. Errors that only show once the model is known (a tokenizer that does not fit the text tower,
fp16 without CUDA) are raised here as ConfigError naming the key.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from cliplab.data import DataConfig
from cliplab.data.loader import build_map_dataset
from cliplab.train.config import ConfigError, LoopConfig, ModelSetupConfig, OptimConfig, TrainConfig
from cliplab.train.distributed_setup import DistributedContext, wrap_model
from cliplab.train.loss_setup import build_loss
from cliplab.train.optim import build_optimizer

TOKENIZER_FILE = "tokenizer.json"


def configure_torch(loop: LoopConfig, context: DistributedContext) -> None:
    """Intra-op threads (default: the cores divided among this machine's ranks) and determinism."""
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(context.world_size)))
    threads = loop.threads or max(1, (os.cpu_count() or 1) // max(local_world, 1))
    torch.set_num_threads(threads)
    if loop.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if context.device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.benchmark = False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(setup: ModelSetupConfig, device: torch.device) -> nn.Module:
    """create_model(name, **overrides), towers locked as asked, on `device`, in train mode; its
    forward returns a dict (output_dict=True), which the loss reads by key."""
    from cliplab.models import create_model

    try:
        model = create_model(setup.name, output_dict=True, **setup.overrides)
    except ValueError as error:
        raise ConfigError("model", setup.name, f"does not build a model: {error}") from None
    if setup.lock_image:
        model.lock_image_tower(unlocked_groups=setup.lock_image_unlocked_groups,
                               freeze_norms=setup.lock_image_freeze_bn_stats)
    if setup.lock_text:
        model.lock_text_tower(unlocked_layers=setup.lock_text_unlocked_layers,
                              freeze_norms=setup.lock_text_freeze_layer_norm)
    if setup.grad_checkpointing:
        model.set_grad_checkpointing(True)
    return model.to(device).train()


def caption_corpus(data: DataConfig) -> list[str]:
    """Texts to train a tokenizer on: the built-in caption corpus, or a CSV manifest's captions."""
    if data.dataset_type == "fashion-mnist":
        from cliplab.data import fashion_mnist_caption_corpus

        return fashion_mnist_caption_corpus()
    if data.dataset_type == "csv" and data.train_data:
        import csv

        if not Path(data.train_data).is_file():
            raise ConfigError("data.train_data", data.train_data, "must be an existing CSV/TSV manifest")
        with open(data.train_data, newline="") as handle:
            reader = csv.DictReader(handle, delimiter=data.csv_separator)
            if data.csv_caption_key not in (reader.fieldnames or []):
                raise ConfigError("data.csv_caption_key", data.csv_caption_key,
                                  f"is not a column of {data.train_data} (columns: {reader.fieldnames})")
            return [row[data.csv_caption_key] for row in reader if row[data.csv_caption_key]]
    raise ConfigError("model.tokenizer", None, f"must name a tokenizer.json for dataset_type "
                      f"{data.dataset_type!r} (cliplab trains one only on fashion-mnist or csv captions)")


def _check_tokenizer_fits(tokenizer: Any, model: nn.Module, source: str) -> None:
    text = model.config.text
    if tokenizer.vocab_size > text.vocab_size:
        raise ConfigError("model.tokenizer", source, f"has {tokenizer.vocab_size} tokens, more than the text "
                          f"tower's vocab_size {text.vocab_size}")
    if tokenizer.context_length != text.context_length:
        raise ConfigError("model.tokenizer", source, f"makes sequences of {tokenizer.context_length} tokens, the "
                          f"text tower expects context_length {text.context_length}")
    if tokenizer.pad_id != text.pad_id:
        raise ConfigError("model.tokenizer", source, f"pads with id {tokenizer.pad_id}, the text tower masks "
                          f"pad_id {text.pad_id}")


def build_tokenizer(config: TrainConfig, model: nn.Module, resume_from: Path | None,
                    run_dir: Path, context: DistributedContext) -> Any:
    """The run's tokenizer: the resumed checkpoint's, a given file, or one trained on the captions.

    Training happens on the main process only; the others load its file, so every rank tokenizes
    identically.
    """
    from cliplab.data.tokenizer import Tokenizer

    if resume_from is not None:
        source = str(resume_from / TOKENIZER_FILE)
    elif config.model.tokenizer is not None:
        source = config.model.tokenizer
    else:
        source = str(run_dir / TOKENIZER_FILE)
        if context.is_main:
            text = model.config.text
            trained = Tokenizer.train(caption_corpus(config.data), vocab_size=text.vocab_size,
                                      context_length=text.context_length)
            trained.save(source)
        if context.distributed:
            dist.barrier()
    if not Path(source).is_file():
        raise ConfigError("model.tokenizer", source, "must be an existing tokenizer.json")
    tokenizer = Tokenizer.from_file(source)
    _check_tokenizer_fits(tokenizer, model, source)
    return tokenizer


def build_grad_scaler(loop: LoopConfig, device: torch.device) -> torch.amp.GradScaler | None:
    """A GradScaler for fp16 ('amp'/'fp16') on CUDA; None otherwise."""
    if not loop.uses_grad_scaler:
        return None
    if device.type != "cuda":
        raise ConfigError("loop.precision", loop.precision, "needs CUDA (fp16 with a GradScaler); use bf16 on CPU")
    return torch.amp.GradScaler("cuda")


def autocast_factory(loop: LoopConfig, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """() -> the autocast context of the run's precision (a null context for fp32)."""
    dtype_name = loop.autocast_dtype
    if dtype_name is None:
        return contextlib.nullcontext
    dtype = getattr(torch, dtype_name)
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def wrap_for_training(model: nn.Module, config: TrainConfig, context: DistributedContext) -> nn.Module:
    """DDP (when distributed), then torch.compile (when asked). The unwrapped model is what is saved."""
    wrapped = wrap_model(model, context, find_unused_parameters=config.distributed.find_unused_parameters)
    if config.model.torchcompile:
        wrapped = torch.compile(wrapped)
    return wrapped


def build_loss_for(config: TrainConfig, model: nn.Module, context: DistributedContext) -> nn.Module:
    kind = model.config.kind
    if config.loss.siglip != (kind == "siglip"):
        raise ConfigError("loss.siglip", config.loss.siglip, f"does not match the model kind {kind!r} "
                          f"(a siglip model needs --siglip, a {kind} model must not have it)")
    return build_loss(config.loss, is_coca=kind == "coca", pad_id=model.config.text.pad_id,
                      rank=context.rank, world_size=context.world_size)


def build_objectives(config: TrainConfig, model: nn.Module, tokenizer: Any) -> nn.Module | None:
    """The x-clip objective terms (`cliplab.objectives`), or None when none is enabled."""
    from cliplab.objectives import build_objectives as build

    try:
        objectives = build(config.objectives, model, tokenizer)
    except ValueError as error:
        raise ConfigError("objectives", "<section>", str(error)) from None
    if not objectives.weights:
        return None
    if config.loop.accum_freq > 1:
        raise ConfigError("loop.accum_freq", config.loop.accum_freq,
                          "must be 1 when objectives are enabled (their terms run their own forwards per batch)")
    return objectives


@dataclass(frozen=True)
class Transforms:
    train: Callable
    eval: Callable


def build_transforms(model: nn.Module) -> Transforms:
    from cliplab.data.transforms import image_transform

    preprocess = model.config.preprocess
    return Transforms(train=image_transform(preprocess, True), eval=image_transform(preprocess, False))


def build_train_dataset(data: DataConfig):
    """The map-style training dataset, read once for all epochs (None for webdataset shards)."""
    if data.dataset_type == "webdataset":
        return None
    return build_map_dataset(data, train=True)


def clip_gradients(model: nn.Module, max_norm: float | None) -> torch.Tensor | None:
    """Clip the global gradient L2 norm to max_norm (if set); return the norm before clipping."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return None
    if max_norm is None:
        return torch.nn.utils.get_total_norm(grads, foreach=False)
    return torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], max_norm,
                                          foreach=False)


build_optimizer_for: Callable[[nn.Module, OptimConfig], torch.optim.Optimizer] = build_optimizer

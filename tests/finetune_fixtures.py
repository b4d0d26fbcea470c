"""A small random-weight open_clip hub directory, written by `cliplab.export`, and the runs that
fine-tune it on a tiny CSV (the fine-tuning tests of the trainer and the CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cliplab.data.preprocess_config import PreprocessConfig
from cliplab.data.tokenizer_openai import openai_bpe_tokenizer
from cliplab.losses import ClipLoss
from cliplab.models import build_model
from cliplab.models.open_clip_config import config_from_open_clip
from cliplab.pretrained.export import export
from cliplab.train import TrainHooks, train
from cliplab.train.config import ModelSetupConfig

from data_fixtures import make_manifest
from train_helpers import assert_same_final_checkpoint, csv_config

# open_clip's layout (OpenAI BPE ids, 77 positions, argmax pooling), shrunk to run in a second.
SMALL_OPEN_CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
# Not the defaults, so that a run that used its own statistics would show.
PREPROCESS_CFG = {"size": 32, "mean": [0.5, 0.25, 0.125], "std": [0.25, 0.5, 0.2], "interpolation": "bilinear"}


def write_small_hub(directory: Path, seed: int = 0) -> Path:
    """An open_clip hub directory (open_clip_config.json + open_clip_model.safetensors) holding a
    seeded random SMALL_OPEN_CLIP_CFG model with PREPROCESS_CFG."""
    preprocess = PreprocessConfig.from_open_clip(PREPROCESS_CFG, PREPROCESS_CFG["size"])
    torch.manual_seed(seed)
    model = build_model(config_from_open_clip(SMALL_OPEN_CLIP_CFG, preprocess))
    return export(model, openai_bpe_tokenizer(77), directory, format="open_clip")


def finetune_config(logs: Path, manifest: Path, pretrained: Path | str, *, name: str = "finetune", steps: int = 4,
                    batch_size: int = 8, **model_setup):
    """`steps` epochs of one optimiser step each over the `batch_size` rows of `manifest`, starting
    from `pretrained`; constant lr without warmup (so a resumed run and an uninterrupted one share
    the schedule), a checkpoint at the end."""
    config = csv_config(logs, manifest, name=name, batch_size=batch_size, epochs=steps)
    config.model = ModelSetupConfig(pretrained=str(pretrained), **model_setup)
    config.optim.warmup = 0
    config.optim.lr_scheduler = "const"
    return config


def assert_fine_tune_resumes_exactly(logs: Path, manifest: Path, pretrained: Path | str, *, batch_size: int = 8,
                                     hooks: TrainHooks | None = None) -> None:
    """A 4-step fine-tune from `pretrained` ("whole" under `logs`) and one stopped after 2 steps, then
    resumed to 4 with `hooks` ("resumed"): the same final checkpoint, weights and optimiser state."""
    train(finetune_config(logs, manifest, pretrained, name="whole", steps=4, batch_size=batch_size))
    train(finetune_config(logs, manifest, pretrained, name="resumed", steps=2, batch_size=batch_size))
    resumed = finetune_config(logs, manifest, pretrained, name="resumed", steps=4, batch_size=batch_size)
    resumed.checkpoint.resume = "latest"
    resumed.checkpoint.allow_config_change = ("loop.epochs",)  # constant lr: the schedule does not move
    train(resumed, hooks=hooks)
    assert_same_final_checkpoint(logs / "resumed", logs / "whole", steps=4)


def clip_loss_of(model: torch.nn.Module, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The dense CLIP loss of `model` (train mode, forward returning a dict) on one batch."""
    output = model.train()(images, tokens)
    return ClipLoss()(output["image_features"], output["text_features"], output["logit_scale"])


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A small random-weight open_clip hub directory (`write_small_hub`)."""
    return write_small_hub(tmp_path_factory.mktemp("pretrained") / "hub")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """8 flat-coloured 8x8 PNGs captioned "caption i"."""
    return make_manifest(tmp_path_factory.mktemp("data"), 8)

"""Image features of a dataset split for several models at once, decoding every image once.

DataLoader workers read and decode each image of the split once and apply each distinct
preprocessing once (models whose preprocessing is equal share the tensor); the main process runs
every model's image tower on the batch under `torch.inference_mode()` and the model's precision
(its weights' dtype, inside its autocast), and keeps the unit-norm float32 features. An image that
cannot be decoded stops the pass with one line naming it (a benchmark skips nothing: its numbers
would no longer compare). Progress: a line with images/s (`cliplab.console.Progress`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Hashable, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from cliplab.data.benchmark import BenchmarkSplit
from cliplab.data.samples import BadSampleError
from cliplab.errors import InvalidInputError, UserError
from cliplab.eval.embeddings import ProgressCounter
from cliplab.eval.model_mode import inference_mode, model_dtype
from cliplab.precision_names import PRECISIONS

Autocast = Callable[[], contextlib.AbstractContextManager]


def autocast_for(precision: str, device: torch.device) -> Autocast:
    """The autocast of `precision`: fp32 none; amp torch's autocast in the device's own low
    precision, as CLIP_benchmark's amp (fp16 on CUDA, bf16 on a CPU); fp16 fp16 autocast (CUDA
    only); bf16 == amp_bf16 bf16 autocast."""
    if precision not in PRECISIONS:
        raise InvalidInputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext
    if precision == "amp":
        return lambda: torch.autocast(device_type=device.type)
    if precision == "fp16" and device.type != "cuda":
        raise InvalidInputError(f"--precision fp16 needs CUDA; use amp or bf16 (bf16 autocast) on {device}")
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


@dataclass(frozen=True)
class ImageEncoder:
    """One model's image side: preprocess (PIL -> Float[3, S, S]) and `preprocess_key`, equal for
    models whose preprocessing is equal; the model on `device`, run inside `autocast`."""

    model: torch.nn.Module
    preprocess: Callable
    preprocess_key: Hashable
    device: torch.device
    autocast: Autocast = contextlib.nullcontext


class _DecodedBatches:
    """A DataLoader "dataset" whose item for a list of indices is one stacked tensor per
    preprocessing, or {"error": "source: reason"} for an image that cannot be decoded."""

    def __init__(self, split: BenchmarkSplit, transforms: Sequence[Callable]):
        self.images, self.transforms = split.images, list(transforms)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, indices: list[int]):
        try:
            decoded = [self.images.read(index) for index in indices]
        except BadSampleError as error:
            return {"error": str(error)}
        return [torch.stack([transform(image) for image in decoded]) for transform in self.transforms]


def _identity(batch):
    return batch


def encode_split_images(split: BenchmarkSplit, encoders: Sequence[ImageEncoder], *, batch_size: int,
                        workers: int = 0, progress: ProgressCounter | None = None,
                        limit: int | None = None) -> list[torch.Tensor]:
    """[N, E_m] float32 unit-norm image features of `split` (its first `limit` images; None: all),
    one tensor per encoder, in split order."""
    if not encoders:
        return []
    keys: list[Hashable] = []
    for encoder in encoders:
        if encoder.preprocess_key not in keys:
            keys.append(encoder.preprocess_key)
    transforms = [next(encoder.preprocess for encoder in encoders if encoder.preprocess_key == key) for key in keys]
    group_of = [keys.index(encoder.preprocess_key) for encoder in encoders]
    count = len(split) if limit is None else min(limit, len(split))
    batches = [list(range(start, min(start + batch_size, count))) for start in range(0, count, batch_size)]
    loader = DataLoader(_DecodedBatches(split, transforms), batch_size=None, sampler=batches, num_workers=workers,
                        collate_fn=_identity, prefetch_factor=4 if workers else None,
                        persistent_workers=False)
    features: list[list[torch.Tensor]] = [[] for _ in encoders]
    dtypes = [model_dtype(encoder.model) for encoder in encoders]
    with contextlib.ExitStack() as modes:
        for model in {id(encoder.model): encoder.model for encoder in encoders}.values():
            modes.enter_context(inference_mode(model))  # eval mode, the previous mode restored after
        modes.enter_context(torch.inference_mode())
        for batch in loader:
            if isinstance(batch, dict):
                raise UserError(f"{split.where}: cannot read image {batch['error']}")
            for position, encoder in enumerate(encoders):
                images = batch[group_of[position]].to(device=encoder.device, dtype=dtypes[position])
                with encoder.autocast():
                    output = encoder.model.encode_image(images, normalize=False)  # normalised in fp32 below
                features[position].append(F.normalize(output.float(), dim=-1).cpu())
            if progress is not None:
                progress.update(batch[0].shape[0])
    return [torch.cat(parts) for parts in features]

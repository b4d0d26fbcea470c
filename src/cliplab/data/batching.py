"""Turning a batch of dataset indices into the batch dict the training loop consumes.

Batch format (the contract with the training loop):
    images: float [B, 3, H, W]   (whatever the transform returns, stacked)
    tokens: long [B, T]          (the tokenizer's output for the captions)
    sample_ids: long [B]         (global dataset index of each sample)
    labels: long [B]             (class label, -1 where unknown)
    captions: list[str] (B)
    skipped: int                 (bad samples met while assembling this batch)
    skipped_examples: list[str]  ("source: reason" of each of them)
and, in evaluation batches (`caption_lists=True`), every caption of each sample (`caption_lists`):
    caption_lists: list[list[str]] (B)
    caption_tokens: long [M, T]  (the tokens of all of them, sample after sample; M = their count)

Skipping policy: a sample whose read raises BadSampleError is counted and, for training, replaced
by another sample chosen by a hash of (seed, epoch, bad index, attempt), so every batch keeps
exactly B samples whichever rank met the bad ones, and ranks stay in step under DDP. Evaluation
does not refill (duplicates would bias metrics); its batches may come out short.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from PIL import Image

from cliplab.data.samples import BadSampleError, MapDataset, TooManyBadSamplesError
from cliplab.data.seeding import mix_seed, preserved_global_rngs, seed_global_rngs

Transform = Callable[[Image.Image], torch.Tensor]
Tokenize = Callable[[list[str]], torch.Tensor]

_AUGMENT_SALT = 0xA11
_REPLACE_SALT = 0x5EED

# A batch needing more replacements than this has lost most of its draws: far past any sensible
# threshold, so give up on it instead of drawing forever from a dataset that may be all bad.
REPLACEMENTS_PER_SLOT = 4


@dataclass(frozen=True)
class PreparedSample:
    """One sample after preprocessing: image float [3, H, W]; captions: all of the sample's
    (`caption` is the one of this epoch among them)."""

    image: torch.Tensor
    caption: str
    label: int
    sample_id: int
    captions: tuple[str, ...] = ()


def _tokenized(tokenize: Tokenize, texts: list[str]) -> torch.Tensor:
    if not texts:
        return torch.empty((0, 0), dtype=torch.long)
    tokens = tokenize(texts)
    if not (isinstance(tokens, torch.Tensor) and tokens.dtype == torch.long
            and tokens.ndim == 2 and tokens.shape[0] == len(texts)):
        raise TypeError(f"tokenize must return a LongTensor [{len(texts)}, T], got "
                        f"{getattr(tokens, 'dtype', type(tokens))} {list(getattr(tokens, 'shape', []))}")
    return tokens


def assemble_batch(samples: Sequence[PreparedSample], *, tokenize: Tokenize, skipped: int,
                   skipped_examples: list[str], caption_lists: bool = False) -> dict:
    """Stack prepared samples into the batch dict (see the module docstring); may be empty.
    caption_lists: add every caption of each sample (evaluation)."""
    captions = [sample.caption for sample in samples]
    batch = {
        "images": torch.stack([sample.image for sample in samples]) if samples else torch.empty(0),
        "tokens": _tokenized(tokenize, captions),
        "sample_ids": torch.tensor([sample.sample_id for sample in samples], dtype=torch.long),
        "labels": torch.tensor([sample.label for sample in samples], dtype=torch.long),
        "captions": captions,
        "skipped": skipped,
        "skipped_examples": skipped_examples,
    }
    if caption_lists:
        lists = [list(sample.captions or (sample.caption,)) for sample in samples]
        batch["caption_lists"] = lists
        batch["caption_tokens"] = _tokenized(tokenize, [caption for texts in lists for caption in texts])
    return batch


class MapBatchAssembler:
    """A DataLoader "dataset" whose item for a list of indices is an assembled batch.

    Loading a whole batch in one worker lets that worker replace bad samples itself, so the batch
    comes out complete and the same whatever the worker count. The augmentation of sample i in
    epoch e runs under RNGs seeded from (seed, e, i): a resumed run reproduces it exactly.
    caption_lists: the batches carry every caption of each sample (evaluation).
    """

    def __init__(self, dataset: MapDataset, *, transform: Transform, tokenize: Tokenize, seed: int,
                 epoch: int, refill: bool, caption_lists: bool = False):
        self.dataset = dataset
        self.transform = transform
        self.tokenize = tokenize
        self.seed = seed
        self.epoch = epoch
        self.refill = refill
        self.caption_lists = caption_lists

    def prepare(self, index: int) -> PreparedSample:
        """Read and preprocess dataset item `index`; raises BadSampleError for a bad one.

        Reseeds the global RNGs: call inside `preserved_global_rngs()`.
        """
        raw = self.dataset.read(index, epoch=self.epoch)
        if not raw.caption.strip():
            raise BadSampleError(raw.source, "empty caption")
        seed_global_rngs(mix_seed(self.seed, self.epoch, index, _AUGMENT_SALT))
        image = self.transform(raw.image)
        return PreparedSample(image=image, caption=raw.caption, label=raw.label, sample_id=index, captions=raw.captions)

    def replacement_index(self, bad_index: int, attempt: int) -> int:
        return mix_seed(self.seed, self.epoch, bad_index, attempt, _REPLACE_SALT) % len(self.dataset)

    def __getitem__(self, indices: list[int]) -> dict:
        with preserved_global_rngs():
            return self._assemble(indices)

    def _assemble(self, indices: list[int]) -> dict:
        prepared: list[PreparedSample] = []
        skipped_examples: list[str] = []
        max_replacements = REPLACEMENTS_PER_SLOT * len(indices)
        for index in indices:
            candidate, attempt = index, 0
            while True:
                try:
                    prepared.append(self.prepare(candidate))
                    break
                except BadSampleError as error:
                    skipped_examples.append(str(error))
                if not self.refill:
                    break
                if len(skipped_examples) > max_replacements:
                    raise TooManyBadSamplesError(
                        f"{len(skipped_examples)} of the samples drawn for one batch of "
                        f"{len(indices)} were bad; examples:\n  "
                        + "\n  ".join(skipped_examples[:5]))
                attempt += 1
                candidate = self.replacement_index(index, attempt)
        return assemble_batch(prepared, tokenize=self.tokenize, skipped=len(skipped_examples),
                              skipped_examples=skipped_examples, caption_lists=self.caption_lists)


def identity_collate(batch: dict) -> dict:
    """The batch is assembled in the worker already; a module-level function so workers can pickle it."""
    return batch

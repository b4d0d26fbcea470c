"""One pass over a split for several models: every image decoded once, every distinct preprocessing
applied once, each model's features equal to encoding it alone."""

import contextlib
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from benchmark_fixtures import SIZE, MemoryImages, memory_split, preprocess
from cliplab.data.benchmark import BenchmarkSplit
from cliplab.data.samples import BadSampleError
from cliplab.errors import UserError
from cliplab.eval.split_features import ImageEncoder, autocast_for, encode_split_images
from eval_toy_models import BagOfTokensModel


@dataclass(frozen=True)
class CountingImages(MemoryImages):
    reads: list

    def read(self, index):
        self.reads.append(index)
        return super().read(index)


class CountingPreprocess:
    def __init__(self, scale: float):
        self.scale, self.calls = scale, 0

    def __call__(self, image):
        self.calls += 1
        return preprocess(image) * self.scale


def test_each_image_is_decoded_once_and_each_preprocessing_applied_once():
    source = memory_split("test", 11, seed=0)
    reads = []
    split = BenchmarkSplit("test", CountingImages(source.images.images, reads), source.labels, None, "memory")
    shared, other = CountingPreprocess(1.0), CountingPreprocess(0.5)
    models = [BagOfTokensModel(image_pixels=3 * SIZE * SIZE, seed=seed).eval() for seed in range(3)]
    encoders = [ImageEncoder(models[0], shared, "a", torch.device("cpu")),
                ImageEncoder(models[1], shared, "a", torch.device("cpu")),
                ImageEncoder(models[2], other, "b", torch.device("cpu"))]
    features = encode_split_images(split, encoders, batch_size=4)
    assert sorted(reads) == list(range(11)) and shared.calls == 11 and other.calls == 11
    for model, scale, values in zip(models, (1.0, 1.0, 0.5), features):
        images = torch.stack([preprocess(image) * scale for image in source.images.images])
        with torch.no_grad():
            expected = F.normalize(model.encode_image(images), dim=-1)
        torch.testing.assert_close(values, expected)  # batches of 4 vs one of 11: float reassociation only


def test_workers_give_the_same_features_in_split_order():
    split = memory_split("test", 9, seed=2)
    encoder = ImageEncoder(BagOfTokensModel(image_pixels=3 * SIZE * SIZE).eval(), preprocess, "p",
                           torch.device("cpu"))
    in_process = encode_split_images(split, [encoder], batch_size=2)[0]
    assert torch.equal(encode_split_images(split, [encoder], batch_size=2, workers=2)[0], in_process)
    assert torch.equal(encode_split_images(split, [encoder], batch_size=2, limit=5)[0], in_process[:5])


class BrokenImages(MemoryImages):
    def read(self, index):
        if index == 2:
            raise BadSampleError("shard.tar:s0000002", "cannot decode image (truncated)")
        return super().read(index)


def test_an_undecodable_image_stops_the_pass_naming_it():
    source = memory_split("test", 4, seed=1)
    split = BenchmarkSplit("test", BrokenImages(source.images.images), source.labels, None, "shards/test")
    encoder = ImageEncoder(BagOfTokensModel(image_pixels=3 * SIZE * SIZE), preprocess, "p", torch.device("cpu"))
    with pytest.raises(UserError, match=r"^shards/test: cannot read image shard.tar:s0000002: cannot decode"):
        encode_split_images(split, [encoder], batch_size=2, workers=1)


def test_precisions():
    assert autocast_for("fp32", torch.device("cpu")) is contextlib.nullcontext
    with autocast_for("bf16", torch.device("cpu"))():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    with autocast_for("amp", torch.device("cpu"))():  # CLIP_benchmark's amp on a CPU
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    with pytest.raises(UserError, match=r"--precision fp16 needs CUDA"):
        autocast_for("fp16", torch.device("cpu"))

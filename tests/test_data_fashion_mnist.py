import gzip
from pathlib import Path

import numpy as np
import pytest

from cliplab.data.fashion_mnist import (FASHION_MNIST_CLASSNAMES, FASHION_MNIST_TEMPLATES,
                                        FashionMnistDataset, fashion_mnist_caption_corpus)
from cliplab.data.fashion_mnist_files import SPLIT_FILES
from cliplab.data.idx import IdxFormatError
from data_fixtures import make_fashion_dir, tiny_fashion_arrays, write_idx

SYSTEM = Path("/usr/share/datasets/fashion-mnist")


def no_network(url, destination):
    raise OSError("network disabled")


def tiny(tmp_path, split="train", **kwargs):
    return FashionMnistDataset(split=split, data_dir=make_fashion_dir(tmp_path / "fm"),
                               cache_dir=tmp_path / "cache", fetch=no_network, **kwargs)


def test_samples_hold_the_file_pixels_and_labels(tmp_path):
    dataset = tiny(tmp_path, split="test")
    images, labels = tiny_fashion_arrays(10, seed=1)
    assert len(dataset) == 10
    sample = dataset.read(3, epoch=0)
    pixels = np.asarray(sample.image)
    assert sample.image.mode == "RGB" and pixels.shape == (28, 28, 3)
    for channel in range(3):
        assert np.array_equal(pixels[..., channel], images[3])
    assert sample.label == labels[3] == 3
    assert sample.source == "fashion-mnist/test/3"


def test_captions_name_the_class_and_vary_with_epoch(tmp_path):
    dataset = tiny(tmp_path, caption_seed=5)
    captions = [dataset.read(7, epoch=epoch).caption for epoch in range(6)]
    assert len(set(captions)) > 1
    assert captions == [dataset.read(7, epoch=epoch).caption for epoch in range(6)]
    class_captions = set(dataset.captioner.captions_per_class[7])
    assert all(caption in class_captions for caption in captions)
    other = tiny(tmp_path, caption_seed=6)
    assert [other.read(7, epoch=e).caption for e in range(6)] != captions


def test_label_count_mismatch_is_reported(tmp_path):
    directory = make_fashion_dir(tmp_path / "fm")
    write_idx(directory / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(IdxFormatError, match="expected 20 labels"):
        FashionMnistDataset(split="train", data_dir=directory, fetch=no_network)


def test_out_of_range_label_is_reported(tmp_path):
    directory = make_fashion_dir(tmp_path / "fm")
    write_idx(directory / "train-labels-idx1-ubyte.gz", np.full(20, 12, np.uint8))
    with pytest.raises(IdxFormatError, match=r"labels must lie in \[0, 10\)"):
        FashionMnistDataset(split="train", data_dir=directory, fetch=no_network)


def test_split_is_required_and_checked(tmp_path):
    with pytest.raises(TypeError):
        FashionMnistDataset(data_dir=tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        FashionMnistDataset(split="val", data_dir=tmp_path)


def test_zero_shot_definition():
    assert len(FASHION_MNIST_CLASSNAMES) == 10
    assert FASHION_MNIST_CLASSNAMES[7] == "sneaker" and FASHION_MNIST_CLASSNAMES[9] == "ankle boot"
    assert all(template.count("{}") == 1 for template in FASHION_MNIST_TEMPLATES)
    corpus = fashion_mnist_caption_corpus()
    assert "a photo of a sneaker" in corpus
    assert "a black and white picture of a running shoe" in corpus
    assert "a photo of the ankle boot." in corpus
    assert "a photo of an ankle boot" in corpus
    assert len(corpus) == len(set(corpus))


@pytest.mark.skipif(not all((SYSTEM / name).is_file() for split in SPLIT_FILES.values() for name in split),
                    reason=f"Fashion-MNIST is not in {SYSTEM} (apt-get install dataset-fashion-mnist)")
def test_real_train_split_item_0_matches_bytes_read_independently(tmp_path):
    dataset = FashionMnistDataset(split="train", cache_dir=tmp_path, fetch=no_network)
    with gzip.open(SYSTEM / "train-images-idx3-ubyte.gz") as handle:
        raw_images = handle.read()
    with gzip.open(SYSTEM / "train-labels-idx1-ubyte.gz") as handle:
        raw_labels = handle.read()
    assert len(dataset) == 60000
    item0 = np.frombuffer(raw_images, dtype=np.uint8, count=784, offset=16).reshape(28, 28)
    sample = dataset.read(0, epoch=0)
    assert np.array_equal(np.asarray(sample.image)[..., 0], item0)
    assert sample.label == raw_labels[8] == 9
    test_split = FashionMnistDataset(split="test", cache_dir=tmp_path, fetch=no_network)
    assert len(test_split) == 10000

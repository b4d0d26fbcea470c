import gzip
from pathlib import Path

import numpy as np
import pytest

from cliplab.data.idx import IdxFormatError, read_idx
from data_fixtures import write_idx

REAL_TRAIN_IMAGES = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


def test_round_trip_compressed_and_plain(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for compress in (True, False):
        path = write_idx(tmp_path / f"a{compress}.idx", array, compress=compress)
        loaded = read_idx(path)
        assert loaded.dtype == np.uint8 and loaded.shape == (2, 3, 4)
        assert np.array_equal(loaded, array)
        assert not loaded.flags.writeable


def test_truncated_payload_names_file(tmp_path):
    path = write_idx(tmp_path / "t.idx", np.zeros((4, 5), np.uint8), compress=False)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(IdxFormatError, match=r"t\.idx: truncated.*\(4, 5\).*20 bytes.*holds 17"):
        read_idx(path)


def test_truncated_gzip_names_file(tmp_path):
    path = write_idx(tmp_path / "t.gz", np.zeros((100, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(IdxFormatError, match=r"t\.gz: corrupt or truncated gzip"):
        read_idx(path)


def test_bad_magic_and_dtype(tmp_path):
    (tmp_path / "magic").write_bytes(b"\x01\x00\x08\x01\x00\x00\x00\x00")
    with pytest.raises(IdxFormatError, match="magic"):
        read_idx(tmp_path / "magic")
    (tmp_path / "dtype").write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x00")
    with pytest.raises(IdxFormatError, match="dtype code 0x07"):
        read_idx(tmp_path / "dtype")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.gz"):
        read_idx(tmp_path / "nope.gz")


def test_rewritten_file_is_reread(tmp_path):
    path = write_idx(tmp_path / "a.gz", np.zeros((2,), np.uint8))
    assert read_idx(path).tolist() == [0, 0]
    write_idx(path, np.ones((3,), np.uint8))
    assert read_idx(path).tolist() == [1, 1, 1]


@pytest.mark.skipif(not Path(REAL_TRAIN_IMAGES).exists(), reason=f"{REAL_TRAIN_IMAGES} is absent (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist_matches_independent_read():
    with gzip.open(REAL_TRAIN_IMAGES) as handle:
        raw = handle.read()
    independent = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(60000, 28, 28)
    loaded = read_idx(REAL_TRAIN_IMAGES)
    assert loaded.shape == (60000, 28, 28)
    assert np.array_equal(loaded[0], independent[0])
    assert np.array_equal(loaded[-1], independent[-1])

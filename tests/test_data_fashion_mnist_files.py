import hashlib
import shutil

import pytest

from cliplab.data import fashion_mnist_files as files
from cliplab.data.fashion_mnist_files import (FashionMnistNotFoundError, default_cache_dir,
                                              download_split, locate_fashion_mnist)
from data_fixtures import make_fashion_dir


def no_network(url, destination):
    raise OSError("network disabled in tests")


def test_named_directory_wins(tmp_path):
    named = make_fashion_dir(tmp_path / "named")
    system = make_fashion_dir(tmp_path / "system")
    images, labels = locate_fashion_mnist("train", data_dir=named, system_dir=system,
                                          cache_dir=tmp_path / "cache", fetch=no_network)
    assert images == named / "train-images-idx3-ubyte.gz"
    assert labels == named / "train-labels-idx1-ubyte.gz"


def test_a_named_directory_that_does_not_hold_the_split_is_an_error_not_a_fallback(tmp_path):
    # Before: --train-data /nonexistent/dir trained on the system copy instead.
    system = make_fashion_dir(tmp_path / "system")
    with pytest.raises(FashionMnistNotFoundError) as missing:
        locate_fashion_mnist("train", data_dir=tmp_path / "nonexistent", system_dir=system, fetch=no_network)
    assert str(missing.value) == (f"Fashion-MNIST directory {tmp_path / 'nonexistent'} (--train-data or --val-data) "
                                  "does not exist; name a directory holding the idx files, or leave the flag out "
                                  "to use the system copy or the cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FashionMnistNotFoundError) as lacking:
        locate_fashion_mnist("test", data_dir=tmp_path / "empty", system_dir=system, fetch=no_network)
    assert str(lacking.value) == (f"Fashion-MNIST directory {tmp_path / 'empty'} (--train-data or --val-data) does "
                                  "not hold the test split (t10k-images-idx3-ubyte.gz and "
                                  "t10k-labels-idx1-ubyte.gz, gzip-compressed or not)")


def test_falls_back_to_system_then_cache(tmp_path):
    system = make_fashion_dir(tmp_path / "system")
    found = locate_fashion_mnist("test", system_dir=system, cache_dir=tmp_path / "cache", fetch=no_network)
    assert found[0] == system / "t10k-images-idx3-ubyte.gz"
    cache = make_fashion_dir(tmp_path / "cache")
    found = locate_fashion_mnist("test", system_dir=tmp_path / "nosystem", cache_dir=cache,
                                 fetch=no_network)
    assert found[1] == cache / "t10k-labels-idx1-ubyte.gz"


def test_uncompressed_files_are_found(tmp_path):
    directory = make_fashion_dir(tmp_path / "d")
    for path in directory.glob("*.gz"):
        path.rename(path.with_suffix(""))
    images, _ = locate_fashion_mnist("train", data_dir=directory, system_dir=tmp_path / "x",
                                     cache_dir=tmp_path / "y", fetch=no_network)
    assert images == directory / "train-images-idx3-ubyte"


def test_cache_env_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPLAB_CACHE", str(tmp_path / "root"))
    assert default_cache_dir() == tmp_path / "root" / "fashion-mnist"
    monkeypatch.delenv("CLIPLAB_CACHE")
    assert default_cache_dir().parts[-3:] == (".cache", "cliplab", "fashion-mnist")


def md5s_of(directory):
    return {path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in directory.iterdir()}


def test_download_from_file_url_verifies_md5(tmp_path):
    mirror = make_fashion_dir(tmp_path / "mirror")
    cache = tmp_path / "cache"
    # the official sums do not match the tiny files, so pass the tiny files' own sums
    images, labels = download_split("train", cache, fetch=files.urllib_fetch,
                                    mirrors=(mirror.as_uri() + "/",), md5=md5s_of(mirror))
    assert images.read_bytes() == (mirror / "train-images-idx3-ubyte.gz").read_bytes()
    assert labels.read_bytes() == (mirror / "train-labels-idx1-ubyte.gz").read_bytes()
    assert sorted(path.name for path in cache.iterdir()) == [images.name, labels.name]


def test_checksum_mismatch_leaves_nothing_and_tries_next_mirror(tmp_path):
    good = make_fashion_dir(tmp_path / "good")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(good, corrupt)
    (corrupt / "train-images-idx3-ubyte.gz").write_bytes(b"tampered")
    cache = tmp_path / "cache"
    with pytest.raises(OSError, match="corrupt/train-images-idx3-ubyte.gz: MD5 .* differs"):
        download_split("train", cache, mirrors=(corrupt.as_uri() + "/",), md5=md5s_of(good))
    assert not (cache / "train-images-idx3-ubyte.gz").exists()
    assert not list(cache.glob("*.part"))
    download_split("train", cache, mirrors=(corrupt.as_uri() + "/", good.as_uri() + "/"),
                   md5=md5s_of(good))
    assert (cache / "train-images-idx3-ubyte.gz").read_bytes() == (
        good / "train-images-idx3-ubyte.gz").read_bytes()


def test_default_download_checks_official_md5(tmp_path):
    fetched = []

    def fake_fetch(url, destination):
        fetched.append(url)
        destination.write_bytes(b"not the official file")

    with pytest.raises(FashionMnistNotFoundError, match="differs from the official "
                       "8d4fb7e6c68d591d4c3dfef9ec88bf0d"):
        locate_fashion_mnist("train", system_dir=tmp_path / "s", cache_dir=tmp_path / "c",
                             fetch=fake_fetch)
    assert fetched == [mirror + "train-images-idx3-ubyte.gz" for mirror in files.DOWNLOAD_MIRRORS]


def test_missing_everywhere_names_three_ways(tmp_path):
    for split in ("train", "test"):
        with pytest.raises(FashionMnistNotFoundError) as caught:
            locate_fashion_mnist(split, system_dir=tmp_path / "sys", cache_dir=tmp_path / "cache", fetch=no_network)
        message = str(caught.value)
        assert str(tmp_path / "sys") in message
        assert "--train-data DIR" in message
        assert "apt-get install dataset-fashion-mnist" in message
        assert str(tmp_path / "cache") in message and "CLIPLAB_CACHE" in message
        assert "network disabled in tests" in message


def test_download_disabled_message(tmp_path):
    with pytest.raises(FashionMnistNotFoundError, match="downloading is disabled"):
        locate_fashion_mnist("train", system_dir=tmp_path / "s", cache_dir=tmp_path / "c",
                             download=False)


def test_unknown_split(tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        locate_fashion_mnist("validation")

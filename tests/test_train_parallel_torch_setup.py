"""Process-wide torch settings: where torch.compile's cache goes."""

import os

from cliplab.train.parallel.torch_setup import COMPILE_CACHE_ENV_VAR, use_compile_cache


def test_compile_cache_defaults_to_cliplabs_cache(monkeypatch, tmp_path):
    monkeypatch.delenv(COMPILE_CACHE_ENV_VAR, raising=False)
    monkeypatch.setenv("CLIPLAB_CACHE", str(tmp_path))
    assert use_compile_cache() == tmp_path / "torchinductor"
    assert os.environ[COMPILE_CACHE_ENV_VAR] == str(tmp_path / "torchinductor")


def test_compile_cache_keeps_the_directory_the_user_set(monkeypatch, tmp_path):
    monkeypatch.setenv(COMPILE_CACHE_ENV_VAR, str(tmp_path / "mine"))
    monkeypatch.setenv("CLIPLAB_CACHE", str(tmp_path / "cliplab"))
    assert use_compile_cache() == tmp_path / "mine"

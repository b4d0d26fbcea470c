"""pretrained/hf_cache: the Hugging Face cache is found from the environment at call time and read
offline; a repository in neither the cache nor reachable is one UserError naming it and the cache."""

from pathlib import Path

import pytest

from cliplab.errors import UserError
from cliplab.pretrained.hf_cache import cached_file, check_repo_id, hub_cache_dir, snapshot_dir


def build_cache(hub: Path, repo_id: str, files: dict[str, str], revision: str = "0" * 40) -> Path:
    """A cache in huggingface_hub's layout: refs/main names the snapshot that holds `files`."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    for name, text in files.items():
        (snapshot / name).write_text(text)
    return snapshot


def test_hub_cache_dir_follows_the_environment_in_huggingface_hubs_order(monkeypatch, tmp_path):
    for name in ("HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == tmp_path / "home" / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert hub_cache_dir() == tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "direct"))
    assert hub_cache_dir() == tmp_path / "direct"


def test_a_populated_cache_is_read_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = build_cache(tmp_path / "hub", "org/model", {"config.json": "{}", "spiece.model": "x"})
    assert cached_file("org/model", "spiece.model") == snapshot / "spiece.model"
    assert cached_file("org/model", "tokenizer.json") is None
    assert cached_file("org/absent", "config.json") is None
    assert snapshot_dir("org/model", where="--pretrained") == snapshot


def test_a_repository_neither_cached_nor_reachable_is_one_line_naming_it_and_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as raised:
        snapshot_dir("org/absent", where="--pretrained")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"--pretrained: Hugging Face repository org/absent is not in the cache {tmp_path / 'hub'}")


def test_repo_ids_are_org_slash_name():
    assert check_repo_id("org/name", where="x") == "org/name"
    for bad in ("name", "org/", "/name", "a/b/c"):
        with pytest.raises(UserError, match=f"x: expected a Hugging Face repository id org/name, got '{bad}'"):
            check_repo_id(bad, where="x")

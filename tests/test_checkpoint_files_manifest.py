"""Checkpoint manifests: what `verify_checkpoint` accepts and the first problem it names otherwise."""

import hashlib
import json

import pytest

from cliplab.checkpoint_files.manifest import (MANIFEST_FILE, UnverifiedCheckpointError, build_manifest, read_manifest,
                                    verify_checkpoint)

FILES = {"model.safetensors": b"weights" * 100, "train_state.pt": b"state" * 50, "shards/rank_1.distcp": b"shard"}


def _checkpoint(directory, *, step=7, run_id="ab" * 16):
    """A directory of FILES (one in a sub-directory, as a DCP checkpoint has) with its manifest."""
    directory.mkdir()
    for name, content in FILES.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(content)
    (directory / MANIFEST_FILE).write_text(build_manifest(directory, step=step, run_id=run_id).to_json())
    return directory


def test_the_manifest_lists_every_file_with_its_size_and_sha256(tmp_path):
    directory = _checkpoint(tmp_path / "step_0000007")
    written = json.loads((directory / MANIFEST_FILE).read_text())
    assert written == {"format": "cliplab-checkpoint", "version": 1, "step": 7, "run_id": "ab" * 16, "files": {
        name: {"size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
        for name, content in sorted(FILES.items())}}
    manifest = verify_checkpoint(directory)
    assert manifest == read_manifest(directory)
    assert manifest.total_bytes == sum(len(content) for content in FILES.values())


def _flip_byte(path, position=None):
    data = bytearray(path.read_bytes())
    position = len(data) // 2 if position is None else position
    data[position] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, reason", [
    (lambda d: _flip_byte(d / "model.safetensors"),
     "has model.safetensors with another SHA-256 than its manifest's (the file changed after it was written: corrupt)"),
    (lambda d: _flip_byte(d / "shards/rank_1.distcp"),
     "has shards/rank_1.distcp with another SHA-256 than its manifest's (the file changed after it was written: "
     "corrupt)"),
    (lambda d: (d / "train_state.pt").write_bytes(b""),
     "has train_state.pt of 0 bytes, its manifest says 250 (truncated or replaced)"),
    (lambda d: (d / "model.safetensors").unlink(), "lacks model.safetensors, which its manifest lists"),
    (lambda d: (d / "notes.txt").write_text("added later"), "holds notes.txt, which its manifest does not list"),
    (lambda d: (d / MANIFEST_FILE).unlink(),
     "has no manifest.json: its writer did not finish, or a cliplab without checkpoint manifests wrote it"),
    (lambda d: (d / MANIFEST_FILE).write_bytes(b"\xff\xfe"),
     "has an unreadable manifest.json (UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff in position 0: "
     "invalid start byte)"),
    (lambda d: (d / MANIFEST_FILE).write_text('{"format": "cliplab-checkpoint", "version": 1, "step": 7, '
                                              '"run_id": null, "files": {"../escape": {"size": 1, "sha256": ""}}}'),
     "has an unreadable manifest.json (ValueError: file name '../escape')"),
    (lambda d: (d / MANIFEST_FILE).write_text((d / MANIFEST_FILE).read_text().replace('"step": 7', '"step": 8')),
     "holds the manifest of step 8"),
])
def test_each_kind_of_damage_is_named(tmp_path, damage, reason):
    directory = _checkpoint(tmp_path / "step_0000007")
    damage(directory)
    with pytest.raises(UnverifiedCheckpointError) as refused:
        verify_checkpoint(directory)
    assert refused.value.reason == reason
    assert str(refused.value) == f"checkpoint {directory} {reason}"


def test_a_truncated_file_is_found_without_hashing_any_file(tmp_path, monkeypatch):
    import cliplab.checkpoint_files.manifest as manifest_module

    directory = _checkpoint(tmp_path / "step_0000007")
    (directory / "model.safetensors").write_bytes(b"weights")
    monkeypatch.setattr(manifest_module, "sha256_of", lambda path: pytest.fail(f"hashed {path}"))
    with pytest.raises(UnverifiedCheckpointError, match="has model.safetensors of 7 bytes, its manifest says 700"):
        verify_checkpoint(directory)


def test_a_directory_without_a_step_name_is_verified_by_content_alone(tmp_path):
    directory = _checkpoint(tmp_path / "step_0000007")
    renamed = directory.rename(tmp_path / "best")
    assert verify_checkpoint(renamed).step == 7

"""A run's checkpoints directory as every reader reads it: the one reader of `latest`, the newest
checkpoint that verifies, and reading one whole while the run prunes and replaces checkpoints.

The races here are staged deterministically (the run's prune or save happens inside the reader's
verification or read); a real writer thread racing real readers is in tests/test_pretrained_cliplab_bundle.py.
"""

import shutil

import pytest

import cliplab.checkpoint_files.step_dirs as step_dirs_module
from cliplab.checkpoint_files.manifest import MANIFEST_FILE, build_manifest, verified_checkpoint
from cliplab.checkpoint_files.step_dirs import (NoVerifiedCheckpointError, newest_verified, read_pointer, read_whole,
                                                step_dir_name)
from cliplab.errors import UserError


def _checkpoint(directory, step, content=b"weights"):
    path = directory / step_dir_name(step)
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(content * step)
    (path / MANIFEST_FILE).write_text(build_manifest(path, step=step, run_id=None).to_json())
    return path


@pytest.mark.parametrize("content, name, target, problem", [
    (None, None, False, None),
    (b"step_0000002\n", "step_0000002", True, None),
    (b"step_0000009\n", "step_0000009", False, "{p} names step_0000009, which does not exist"),
    (b"\n", None, False, "{p} holds '', not the name of a step directory"),
    (b"../../etc\n", None, False, "{p} holds '../../etc', not the name of a step directory"),
    (b"\xffstep", None, False, "{p} holds bytes that are not UTF-8 text"),
])
def test_the_pointer_says_what_it_names_and_what_is_wrong_with_it(tmp_path, content, name, target, problem):
    _checkpoint(tmp_path, 2)
    pointer = tmp_path / "latest"
    if content is not None:
        pointer.write_bytes(content)
    read = read_pointer(tmp_path)
    assert (read.name, read.target, read.problem) == (name, tmp_path / name if target else None,
                                                       problem and problem.format(p=pointer))


def test_the_newest_verified_checkpoint_is_taken_and_each_skipped_one_said(tmp_path):
    _checkpoint(tmp_path, 1)
    _checkpoint(tmp_path, 2)
    damaged = _checkpoint(tmp_path, 3)
    (damaged / "model.safetensors").write_bytes(b"weightz" * 3)
    notes = []
    assert newest_verified(tmp_path, notes.append, advice="x").path == tmp_path / "step_0000002"
    assert notes == [f"skipping checkpoint {damaged}: it has model.safetensors with another SHA-256 than its "
                     "manifest's (the file changed after it was written: corrupt)"]


def test_none_verifying_is_one_error_and_nothing_at_all_is_none(tmp_path):
    assert newest_verified(tmp_path / "absent", print, advice="x") is None
    (_checkpoint(tmp_path, 1) / "model.safetensors").unlink()
    with pytest.raises(NoVerifiedCheckpointError, match=r"none of the 1 checkpoints in .* verifies \(step_0000001: "
                       r"lacks model.safetensors, which its manifest lists\); restore it"):
        newest_verified(tmp_path, lambda line: None, advice="restore it")


def test_a_checkpoint_pruned_while_verified_is_not_reported_and_the_newer_one_is_taken(tmp_path, monkeypatch):
    """The run saves step 2 and prunes step 1 while the reader hashes step 1 (the newest it listed)."""
    _checkpoint(tmp_path, 1)
    real = step_dirs_module.verified_checkpoint

    def verify_during_a_save(path):
        if path.name == "step_0000001" and not (tmp_path / "step_0000002").exists():
            _checkpoint(tmp_path, 2)
            shutil.rmtree(path)
        return real(path)
    monkeypatch.setattr(step_dirs_module, "verified_checkpoint", verify_during_a_save)
    notes = []
    assert newest_verified(tmp_path, notes.append, advice="x").path == tmp_path / "step_0000002"
    assert notes == []


def test_a_file_that_disappears_while_hashed_fails_verification_not_with_an_oserror(tmp_path, monkeypatch):
    import cliplab.checkpoint_files.manifest as manifest_module

    path = _checkpoint(tmp_path, 1)
    real = manifest_module.sha256_of

    def pruned_meanwhile(file):
        shutil.rmtree(path)
        return real(file)
    monkeypatch.setattr(manifest_module, "sha256_of", pruned_meanwhile)
    with pytest.raises(UserError, match="lost model.safetensors while it was verified"):
        verified_checkpoint(path)


def test_read_whole_reads_again_when_the_checkpoint_changed_during_the_read(tmp_path):
    _checkpoint(tmp_path, 1)
    reads = []

    def read(directory, verified):
        reads.append(directory.name)
        if len(reads) == 1:  # the run saves step 2 and prunes step 1 while this read runs
            _checkpoint(tmp_path, 2)
            shutil.rmtree(directory)
            raise FileNotFoundError(directory / "config.json")
        return (directory / "model.safetensors").read_bytes()

    def choose():
        return newest_verified(tmp_path, print, advice="x")
    assert read_whole(choose, read) == b"weights" * 2
    assert reads == ["step_0000001", "step_0000002"]


def test_read_whole_discards_a_result_read_from_files_that_changed_meanwhile(tmp_path):
    first = _checkpoint(tmp_path, 1)
    results = iter(["mixed", "whole"])

    def read(directory, verified):
        if verified.manifest.files["model.safetensors"].size == len(b"weights"):
            shutil.rmtree(first)  # the run replaces step 1 while it is read (a save of the same step)
            _checkpoint(tmp_path, 1, content=b"others")
        return next(results)
    assert read_whole(lambda: newest_verified(tmp_path, print, advice="x"), read) == "whole"


def test_read_whole_raises_the_error_of_files_that_did_not_change(tmp_path):
    _checkpoint(tmp_path, 1)

    def read(directory, verified):
        raise UserError(f"{directory}/config.json: not a model config")
    with pytest.raises(UserError, match="not a model config"):
        read_whole(lambda: newest_verified(tmp_path, print, advice="x"), read)

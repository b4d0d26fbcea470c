"""The shape of the source tree that issue 12 fixed, kept by tests: short functions in `train`,
torch's object collectives only in `distributed`, imports pointing one way."""

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent / "src" / "cliplab"
MAX_TRAIN_FUNCTION_LINES = 80
# cli -> train -> {models, data, losses, eval, objectives, pretrained} -> distributed; bundle.py, which
# train and cli read checkpoints through, sits on checkpoint_files
LOWER_PACKAGES = ("models", "data", "losses", "eval", "objectives", "pretrained", "checkpoint_files", "distributed")


def _modules(package: str):
    for path in sorted((SOURCE / package).rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def _imported_modules(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_every_function_under_train_is_shorter_than_80_lines():
    lengths = {f"{path.relative_to(SOURCE)}:{node.lineno} {node.name}": node.end_lineno - node.lineno + 1
               for path, tree in _modules("train") for node in ast.walk(tree)
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    longest = max(lengths, key=lengths.get)
    assert lengths[longest] < MAX_TRAIN_FUNCTION_LINES, (longest, lengths[longest])


def test_object_collectives_are_called_only_in_the_distributed_package():
    callers = sorted(str(path.relative_to(SOURCE)) for path in SOURCE.rglob("*.py")
                     if path.parent.name != "distributed"
                     and any(name in path.read_text() for name in ("broadcast_object_list", "all_gather_object")))
    assert callers == []


def test_nothing_below_train_imports_train_or_cli():
    upward = sorted(f"{path.relative_to(SOURCE)} imports {module}" for package in LOWER_PACKAGES
                    for path, tree in _modules(package) for module in _imported_modules(tree)
                    if module.startswith(("cliplab.train", "cliplab.cli")))
    assert upward == []


def test_the_checkpoint_files_sit_below_bundle_and_train():
    """One reader of manifests and `latest` for resume and every other reader (issue 19): nothing in
    checkpoint_files imports what reads through it."""
    upward = sorted(f"{path.relative_to(SOURCE)} imports {module}" for path, tree in _modules("checkpoint_files")
                    for module in _imported_modules(tree)
                    if module.startswith(("cliplab.model_io", "cliplab.open_clip_api", "cliplab.train", "cliplab.cli")))
    assert upward == []


def test_the_train_packages_import_one_way():
    """Issue 22: `parallel` chose the checkpointer and `checkpointing.dcp` used `parallel`, an import
    circle; the choice is the Trainer's, so `parallel` and `step` import nothing of `checkpointing`,
    and nothing below the trainer imports it."""
    upward = sorted(f"{path.relative_to(SOURCE)} imports {module}" for package in ("train/parallel", "train/step")
                    for path, tree in _modules(package) for module in _imported_modules(tree)
                    if module.startswith(("cliplab.train.checkpointing", "cliplab.train.trainer")))
    below_trainer = sorted(f"{path.relative_to(SOURCE)} imports {module}" for path, tree in _modules("train")
                           for module in _imported_modules(tree)
                           if module == "cliplab.train.trainer" and path.name != "__init__.py")
    assert upward == [] and below_trainer == []

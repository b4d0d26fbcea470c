"""Prompt templates and label lists given on the command line or in files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cliplab.errors import InvalidInputError, MissingInputError

# For a user's own labels: neutral wording; a model trained on Fashion-MNIST captions reads it well.
DEFAULT_TEMPLATES = ("a photo of the {}.",)

# A label starting with one of these words (or ending in a full stop) is a phrase already.
PHRASE_OPENINGS = ("a", "an", "the")


def reads_as_phrase(label: str) -> bool:
    """True for a label that is a phrase already ("a red circle", "the sky at night.") rather than a
    name to put into a template ("red circle", "ankle boot")."""
    words = label.split()
    return label.rstrip().endswith(".") or (len(words) > 1 and words[0].lower() in PHRASE_OPENINGS)


@dataclass(frozen=True)
class PhraseAwareTemplate:
    """A template for labels: `template.format(label)`, except that a label which reads as a phrase
    (`reads_as_phrase`) is its own prompt, so "a red circle" never becomes "a photo of the a red circle."."""

    template: str

    def __call__(self, label: str) -> str:
        return label if reads_as_phrase(label) else self.template.format(label)


def check_template(template: str, where: str) -> str:
    """`template` when it holds "{}" exactly once; InvalidInputError naming `where` otherwise."""
    if template.count("{}") != 1:
        raise InvalidInputError(f"{where}: {template!r} must contain '{{}}' exactly once, where the class name goes")
    return template


def read_templates(path: str | Path) -> tuple[str, ...]:
    """Templates of a text file, one per line, each with one "{}"; blank lines and lines starting
    with "#" are skipped."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"--templates: file {path} does not exist")
    templates = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        template = line.strip()
        if not template or template.startswith("#"):
            continue
        templates.append(check_template(template, f"--templates: {path} line {line_number}"))
    if not templates:
        raise InvalidInputError(f"--templates: {path} holds no templates (one per line, each with '{{}}')")
    return tuple(templates)


def parse_labels(text: str) -> tuple[str, ...]:
    """'a, b,c' -> ('a', 'b', 'c'); at least two distinct non-empty labels."""
    labels = tuple(label.strip() for label in text.split(","))
    if any(not label for label in labels):
        raise InvalidInputError(f"--labels: {text!r} has an empty label; expected comma-separated names like 'cat,dog'")
    if len(labels) < 2:
        raise InvalidInputError(f"--labels: {text!r} names {len(labels)} label; classification needs at least two")
    if len(set(labels)) != len(labels):
        raise InvalidInputError(f"--labels: {text!r} repeats a label")
    return labels


def read_numbered_lines(path: str | Path, what: str) -> tuple[tuple[int, str], ...]:
    """(1-based line number, stripped text) of each non-empty line of a UTF-8 text file; `what`
    names the argument in errors."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{what}: file {path} does not exist")
    lines = tuple((number, line.strip()) for number, line in
                  enumerate(path.read_text(encoding="utf-8").splitlines(), start=1) if line.strip())
    if not lines:
        raise InvalidInputError(f"{what}: file {path} holds no non-empty lines")
    return lines

"""Class names and zero-shot templates: a dataset's own files, then the built-in sets by name.

Built in (facts carried as data files in `data/assets/clip_benchmark/`, as CLIP_benchmark 1.6.2
ships them): `<language>_classnames.json` and `<language>_zeroshot_classification_templates.json`
for the datasets CLIP_benchmark names (ImageNet-1k's 1000 class names and OpenAI's 80 templates
under `imagenet1k`, the VTAB+ sets, ...; languages en, ar, cn, it, jp, the last four for
ImageNet-1k only), the 1000 ImageNet WordNet ids in class order, and open_clip's 7-template short
list. Templates hold `{c}` (CLIP_benchmark) or `{}` (cliplab) where the class name goes.

The order, as in CLIP_benchmark for a dataset with files of its own: an explicit choice (a file or
a built-in set's name), the dataset's own file, the built-in set under one of the dataset's names;
where none applies, a UserError naming the file that would have been read.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from cliplab.data.benchmark.dataset import BenchmarkDataset, NamedList
from cliplab.errors import InvalidInputError, MissingInputError, UserError

CLASSNAMES_FILE = "classnames.txt"
TEMPLATES_FILE = "zeroshot_classification_templates.txt"
LANGUAGES = ("en", "ar", "cn", "it", "jp")
IMAGENET = "imagenet1k"
# Template sets a user can name (--templates NAME), besides every dataset key of the built-in files.
TEMPLATE_SET_ALIASES = {"openai": IMAGENET}
OPENAI_SHORT = "openai-short"


@lru_cache(maxsize=None)
def _asset(name: str):
    path = resources.files("cliplab.data") / "assets" / "clip_benchmark" / name
    return json.loads(path.read_text(encoding="utf-8"))


def builtin_classnames(language: str = "en") -> dict[str, list[str]]:
    """CLIP_benchmark's class names by dataset key, for `language`."""
    return _asset(f"{_checked(language)}_classnames.json")


def builtin_templates(language: str = "en") -> dict[str, list[str]]:
    """CLIP_benchmark's zero-shot templates by dataset key, for `language` (`{c}` placeholders)."""
    return _asset(f"{_checked(language)}_zeroshot_classification_templates.json")


def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k WordNet ids (`n01440764`, ...) in class-index order (sorted)."""
    return tuple(_asset("imagenet_extras.json")["imagenet1k_wnids"])


def openai_short_templates() -> tuple[str, ...]:
    """open_clip's short list of 7 ImageNet templates (`SIMPLE_IMAGENET_TEMPLATES`)."""
    return tuple(_asset("imagenet_extras.json")["openai_short_templates"])


def _checked(language: str) -> str:
    if language not in LANGUAGES:
        raise InvalidInputError(f"--language {language!r}: built-in class names and templates exist for "
                                f"{', '.join(LANGUAGES)}")
    return language


def read_lines_file(path: Path, what: str) -> tuple[str, ...]:
    """The stripped lines of a UTF-8 text file, one entry each (class names: line i names class i);
    trailing blank lines are ignored, a blank line before the last entry is an InvalidInputError
    naming the file and line (it would shift every later class). `what` names the file's role."""
    if not path.is_file():
        raise MissingInputError(f"{what} file {path} does not exist")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError:
        raise InvalidInputError(f"{what} file {path} is not UTF-8 text") from None
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise InvalidInputError(f"{what} file {path} is empty; expected one entry per line")
    if "" in lines:
        raise InvalidInputError(f"{what} file {path} line {lines.index('') + 1} is blank; expected one entry per line")
    return tuple(lines)


def check_templates(templates: NamedList) -> NamedList:
    """`templates` when each holds `{c}` or `{}` and formats; InvalidInputError naming its source."""
    for template in templates.values:
        if "{c}" not in template and "{}" not in template:
            raise InvalidInputError(f"{templates.source}: template {template!r} has no '{{c}}' (or '{{}}') where "
                                    "the class name goes")
        try:
            template.format("x", c="x")
        except (IndexError, KeyError, ValueError):
            raise InvalidInputError(f"{templates.source}: template {template!r} has braces other than one "
                                    "'{c}' or '{}'") from None
    return templates


def own_list(directory: Path | None, file_name: str, what: str) -> NamedList | None:
    """The dataset's own class names or templates file in `directory`, or None where it has none."""
    if directory is None or not (directory / file_name).is_file():
        return None
    path = directory / file_name
    return NamedList(read_lines_file(path, what), str(path))


def _first_builtin(table: dict[str, list[str]], names: tuple[str, ...], what: str,
                   language: str) -> NamedList | None:
    for name in names:
        if name in table:
            return NamedList(tuple(table[name]), f"the built-in {what} of {name!r} ({language})")
    return None


def resolve_classnames(dataset: BenchmarkDataset, *, choice: str | None = None, language: str = "en") -> NamedList:
    """The class names zero-shot classification uses (order: module docstring). choice: a file, or
    a built-in dataset key (e.g. "imagenet1k")."""
    if choice is not None:
        return _chosen(choice, builtin_classnames(language), "class names", "--classnames", language)
    found = dataset.classnames or _first_builtin(builtin_classnames(language), dataset.lookup_names,
                                                 "class names", language)
    if found is None:
        raise UserError(_missing(dataset, CLASSNAMES_FILE, "class names", "--classnames"))
    return found


def resolve_templates(dataset: BenchmarkDataset, *, choice: str | None = None, language: str = "en") -> NamedList:
    """The zero-shot templates (order: module docstring). choice: a file, a built-in dataset key,
    "openai" (OpenAI's 80 ImageNet templates) or "openai-short" (open_clip's 7)."""
    if choice is not None:
        if choice == OPENAI_SHORT:
            return NamedList(openai_short_templates(), "open_clip's short ImageNet templates")
        choice = TEMPLATE_SET_ALIASES.get(choice, choice)
        return check_templates(_chosen(choice, builtin_templates(language), "templates", "--templates", language))
    found = dataset.templates or _first_builtin(builtin_templates(language), dataset.lookup_names,
                                                "templates", language)
    if found is None:
        raise UserError(_missing(dataset, TEMPLATES_FILE, "templates", "--templates")
                        + " (--templates openai takes OpenAI's 80 ImageNet templates)")
    return check_templates(found)


def _chosen(choice: str, table: dict[str, list[str]], what: str, flag: str, language: str) -> NamedList:
    path = Path(choice)
    if path.is_file():
        return NamedList(read_lines_file(path, what), str(path))
    if choice in table:
        return NamedList(tuple(table[choice]), f"the built-in {what} of {choice!r} ({language})")
    raise MissingInputError(f"{flag} {choice!r} is neither a file nor a built-in set of {what} "
                            f"(built in for {language}: {', '.join(sorted(table))})")


def _missing(dataset: BenchmarkDataset, file_name: str, what: str, flag: str) -> str:
    where = (f"{dataset.metadata_dir / file_name} does not exist" if dataset.metadata_dir is not None
             else f"{dataset.location} has no {file_name}")
    return (f"zero-shot classification on {dataset.location} needs {what}: {where} and no built-in {what} "
            f"exist for {' / '.join(dataset.lookup_names) or dataset.name}; write the file or pass {flag}")

"""The tables docs/*.md show between generated-table markers, for the tests that keep them equal to
the registries they are generated from."""

from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def generated_table(doc_name: str, begin_marker: str, end_marker: str) -> str:
    """The text of docs/`doc_name` between the line holding `begin_marker` and `end_marker`."""
    text = (DOCS / doc_name).read_text()
    start = text.index(begin_marker + "\n")
    return text[text.index("\n", start) + 1:text.index(end_marker)]

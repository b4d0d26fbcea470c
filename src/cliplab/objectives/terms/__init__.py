"""The objective-term registry: every x-clip term cliplab trains, one `ObjectiveTerm` each (see
`spec` for what a term holds), in one table, `OBJECTIVE_TERMS`.

Everything that depends on which terms exist asks this table: the sections of `ObjectivesConfig`
(`cliplab.objectives.config`), the start-up checks (`build_objectives`), the heads `Objectives`
holds, the terms `Objectives.forward` computes (enabled entries, in table order) and their weights.

How to add a term: write one module in this package that defines the section's config dataclass
(a `TermSection`: `enabled`, `weight` and the term's own keys, checked in `check`), its loss (a
function of `cliplab.objectives.term_inputs.TermInputs`, its section and its head; the pure math
may live in `cliplab.losses.xclip`), its head when it has parameters, and ends with
`TERM = ObjectiveTerm(...)`; then add that `TERM` to `OBJECTIVE_TERMS` below. Append it: the
table's order is the order of the terms' random draws and of their heads' parameters, which runs
and checkpoints replay. The module imports torch, its loss and its head inside the functions that
use them (`spec` says why).

Last, `python scripts/write_docs_tables.py` rewrites the docs' generated table from this one (a
test keeps them equal), and tests/test_objectives_terms.py pins the registered terms in order: add the new name there.
"""

from __future__ import annotations

from cliplab.objectives.terms import contrastive, filip, mlm, multiview, sim_reg, simclr, simsiam
from cliplab.objectives.terms.spec import (TERM_INPUTS, HeadSizes, ObjectiveTerm, TermSection,
                                           UnsupportedObjectiveError, Vocabulary, unsupported)
from cliplab.registry_index import index_entries

OBJECTIVE_TERMS: tuple[ObjectiveTerm, ...] = (
    contrastive.TERM,
    filip.TERM,
    mlm.TERM,
    simsiam.TERM,
    simclr.TERM,
    multiview.TERM,
    sim_reg.TERM,
)

_BY_SECTION = index_entries(OBJECTIVE_TERMS, lambda term: term.section, "OBJECTIVE_TERMS")


def objective_term(section: str) -> ObjectiveTerm:
    """The term of config section `section`; KeyError naming the known sections otherwise."""
    if section not in _BY_SECTION:
        raise KeyError(f"no objective term {section!r}; known: {sorted(_BY_SECTION)}")
    return _BY_SECTION[section]


def terms_table() -> str:
    """The registered terms as the Markdown table docs/objectives.md shows (a test keeps them equal)."""
    lines = ["| section | loss name | config | head | reads | what it is |", "|---|---|---|---|---|---|"]
    for term in OBJECTIVE_TERMS:
        names = " / ".join(f"`{name}`" for name in term.names)
        lines.append(f"| `{term.section}` | {names} | `{term.config.__name__}` | "
                     f"{f'`{term.head_name}`' if term.head_name else '-'} | {', '.join(term.reads)} | "
                     f"{term.summary} |")
    return "\n".join(lines) + "\n"


__all__ = ["OBJECTIVE_TERMS", "TERM_INPUTS", "HeadSizes", "ObjectiveTerm", "TermSection",
           "UnsupportedObjectiveError", "Vocabulary", "objective_term", "terms_table", "unsupported"]

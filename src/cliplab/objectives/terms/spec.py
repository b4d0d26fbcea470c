"""What an objective term is: one `ObjectiveTerm` record holding everything `Objectives` does with
one x-clip term (what a term's loss reads for one batch is `cliplab.objectives.term_inputs.TermInputs`).

The contracts a term's parts keep:

- section / config: the term's section under `objectives:` and its keyword-only dataclass,
  validated in `__post_init__` with `cliplab.config_checks` (a ConfigError naming the key, which
  the composers report as `objectives.<section>.<key>`); off by default, so a config without the section trains plain CLIP.
- enabled(section) / weight(section): whether the term runs and its weight in the total (default:
  the `enabled` and `weight` keys of a `TermSection`, which checks them).
- names: the names the loss can have in `Objectives.forward`'s output and in the logs
  (`loss/<name>`); the first, or the one `choose_name(section)` picks.
- needs(section): what sizing its head or drawing its inputs takes from the model and tokenizer,
  among `HeadSizes`' fields; `Objectives` refuses to build without them (ValueError).
- head_name / head(section, sizes): the module holding the term's parameters, an attribute of
  `Objectives` under `head_name` (so `objectives.<head_name>.*` in state dicts), None when the
  section needs none. Heads are built in table order from the global torch generator.
- image_views(section): how many augmented image views it reads; `TermInputs.image_views` draws
  the largest count any enabled term asks for, once per batch, on first use.
- reads: the `TermInputs` it reads (the docs' table; checked against `TERM_INPUTS`).
- loss(inputs, section, head) -> 0-d fp32 tensor, unweighted.
- check_support(section, model_config, tokenizer): raises `UnsupportedObjectiveError` (via
  `unsupported`) when the model kind or the tokenizer cannot serve the term; None: every model can.

Random draws (masks, views, dropped tokens) come from `inputs.generator` in table order, so the
order of `OBJECTIVE_TERMS` is part of what a run replays.

A term's module imports torch, its loss math and its head inside the functions that use them, so
the table and the config sections import without torch (the CLI's --help reads the config).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cliplab.errors import InvalidInputError
from cliplab.config_checks import check_bool, check_number

if TYPE_CHECKING:
    import torch
    from torch import nn

    from cliplab.objectives.term_inputs import TermInputs

# What a term's loss may read from `TermInputs` (its `reads`).
TERM_INPUTS = ("images", "tokens", "image_features", "text_features", "logit_scale", "features_i2t",
               "image_views", "generator", "vocabulary")


class UnsupportedObjectiveError(InvalidInputError):
    """An enabled objective needs something the model or tokenizer does not provide."""


def unsupported(term: str, kind: str, missing: str) -> UnsupportedObjectiveError:
    """The error of term `term` (a section, or a dotted key) on a model of kind `kind`."""
    return UnsupportedObjectiveError(f"objective '{term}' is not supported by a {kind} model: {missing}")


@dataclass(kw_only=True)
class TermSection:
    """The keys of a term switched on and off: `enabled` and its `weight` (> 0). A subclass sets its
    weight's default and checks its own keys in `check` (with `cliplab.config_checks`, keys as the
    section spells them; `ObjectivesConfig` and the training config put "objectives.<section>." in
    front)."""

    enabled: bool = False
    weight: float = 1.0

    def __post_init__(self) -> None:
        check_bool("enabled", self.enabled)
        check_number("weight", self.weight, low=0.0, low_inclusive=False)
        self.check()

    def check(self) -> None:
        """The section's own keys."""


@dataclass(frozen=True, kw_only=True)
class HeadSizes:
    """What heads are sized from and masks drawn with: the model's pooled latent width `embed_dim`,
    the text tower's hidden width `text_width`, and the tokenizer's `vocab_size`, `pad_id` and
    `mask_id` (None where there is none)."""

    embed_dim: int | None = None
    text_width: int | None = None
    vocab_size: int | None = None
    pad_id: int | None = None
    mask_id: int | None = None

    def missing(self, names: Iterable[str]) -> list[str]:
        """The names among `names` without a usable value (a width must be a positive int)."""
        def usable(name: str) -> bool:
            value = getattr(self, name)
            if name.endswith(("_dim", "_width")):
                return isinstance(value, int) and not isinstance(value, bool) and value > 0
            return value is not None
        return [name for name in names if not usable(name)]


@dataclass(frozen=True, kw_only=True)
class Vocabulary:
    """The token ids the text terms treat specially: `protected_ids` are never masked nor dropped
    (specials and padding)."""

    protected_ids: tuple[int, ...]
    pad_id: int | None
    mask_id: int | None
    vocab_size: int | None


def _switched_on(section: Any) -> bool:
    return section.enabled


def _section_weight(section: Any) -> float:
    return section.weight


def _needs_nothing(section: Any) -> tuple[str, ...]:
    return ()


def _no_views(section: Any) -> int:
    return 0


@dataclass(frozen=True, kw_only=True)
class ObjectiveTerm:
    """One x-clip term, everything `Objectives` does with it in one record (see the module docstring).

    summary: one line for docs/objectives.md's table.
    """

    section: str
    config: type
    summary: str
    names: tuple[str, ...]
    reads: tuple[str, ...]
    loss: Callable[[TermInputs, Any, nn.Module | None], torch.Tensor]
    enabled: Callable[[Any], bool] = _switched_on
    weight: Callable[[Any], float] = _section_weight
    needs: Callable[[Any], tuple[str, ...]] = _needs_nothing
    head_name: str | None = None
    head: Callable[[Any, HeadSizes], nn.Module | None] | None = None
    image_views: Callable[[Any], int] = _no_views
    check_support: Callable[[Any, Any, Any], None] | None = None
    choose_name: Callable[[Any], str] | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.reads) - set(TERM_INPUTS))
        if unknown:
            raise ValueError(f"ObjectiveTerm {self.section!r}: reads {unknown}, not among {TERM_INPUTS}")
        if (self.head is None) != (self.head_name is None):
            raise ValueError(f"ObjectiveTerm {self.section!r}: head and head_name go together")

    def loss_name(self, section: Any) -> str:
        return self.names[0] if self.choose_name is None else self.choose_name(section)

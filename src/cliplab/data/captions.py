"""Natural-language captions for class-labelled images, from templates, synonyms and descriptions.

Every caption a class can get is enumerated up front (template x synonym, x description where the
template has a description slot); a sample's caption is one of them, picked by a hash of
(seed, epoch, sample index). So captions vary across samples and epochs, yet a given sample in a
given epoch always reads the same, in any worker, rank or resumed run.
"""

from __future__ import annotations

from dataclasses import dataclass

from cliplab.data.seeding import mix_seed

NOUN_SLOT, ARTICLE_NOUN_SLOT, DESCRIPTION_SLOT = "{noun}", "{a_noun}", "{description}"


@dataclass(frozen=True, kw_only=True)
class CaptionVocabulary:
    """What captions are made of.

    synonyms[c]: noun phrases naming class c; descriptions[c]: phrases describing it, used where a
    template has a {description} slot; templates: strings with {noun} or {a_noun} (the noun with
    "a"/"an") and optionally {description}.
    """

    synonyms: tuple[tuple[str, ...], ...]
    descriptions: tuple[tuple[str, ...], ...]
    templates: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.synonyms:
            raise ValueError("synonyms must name at least one class")
        if len(self.descriptions) != len(self.synonyms):
            raise ValueError(f"descriptions has {len(self.descriptions)} classes, synonyms "
                             f"{len(self.synonyms)}: they must match")
        for label, (nouns, descriptions) in enumerate(zip(self.synonyms, self.descriptions)):
            if not nouns or not all(noun.strip() for noun in nouns):
                raise ValueError(f"synonyms[{label}] must be non-empty strings, got {nouns!r}")
            if not descriptions or not all(text.strip() for text in descriptions):
                raise ValueError(f"descriptions[{label}] must be non-empty strings, got "
                                 f"{descriptions!r}")
        for template in self.templates:
            if NOUN_SLOT not in template and ARTICLE_NOUN_SLOT not in template:
                raise ValueError(f"template {template!r} has neither {NOUN_SLOT} nor "
                                 f"{ARTICLE_NOUN_SLOT}")
        if not self.templates:
            raise ValueError("templates must not be empty")


def with_article(noun: str) -> str:
    """'a sneaker', 'an ankle boot', 'a one-piece dress' (vowel letters sounding like a consonant)."""
    lowered = noun.lower()
    vowel_sound = lowered[0] in "aeiou" and not lowered.startswith(("one", "uni", "use", "eu"))
    return ("an " if vowel_sound else "a ") + noun


def expand_class_captions(vocabulary: CaptionVocabulary, label: int) -> tuple[str, ...]:
    """Every caption class `label` can get, in a fixed order."""
    captions = []
    for template in vocabulary.templates:
        descriptions = vocabulary.descriptions[label] if DESCRIPTION_SLOT in template else ("",)
        for noun in vocabulary.synonyms[label]:
            for description in descriptions:
                text = (template.replace(ARTICLE_NOUN_SLOT, with_article(noun))
                        .replace(NOUN_SLOT, noun).replace(DESCRIPTION_SLOT, description))
                captions.append(text[0].upper() + text[1:] if template[0] == "{" else text)
    return tuple(captions)


class TemplateCaptioner:
    """Draws a caption per (label, sample index, epoch), deterministically given `seed`."""

    def __init__(self, vocabulary: CaptionVocabulary, *, seed: int):
        self.seed = seed
        self.captions_per_class = tuple(expand_class_captions(vocabulary, label)
                                        for label in range(len(vocabulary.synonyms)))

    @property
    def num_classes(self) -> int:
        return len(self.captions_per_class)

    def caption(self, label: int, *, sample_index: int, epoch: int) -> str:
        if not 0 <= label < self.num_classes:
            raise ValueError(f"label must be in [0, {self.num_classes}), got {label}")
        choices = self.captions_per_class[label]
        return choices[mix_seed(self.seed, epoch, sample_index) % len(choices)]

    def corpus(self) -> list[str]:
        """All captions of all classes (for training a tokenizer), classes in label order."""
        return [text for captions in self.captions_per_class for text in captions]

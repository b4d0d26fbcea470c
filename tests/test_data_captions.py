import pytest

from cliplab.data.captions import (CaptionVocabulary, TemplateCaptioner, expand_class_captions,
                                   with_article)

VOCABULARY = CaptionVocabulary(
    synonyms=(("cat", "kitten"), ("owl",)),
    descriptions=(("asleep",), ("at night", "in a tree")),
    templates=("a photo of {a_noun}", "{a_noun} {description}"),
)


def test_expansion_is_template_x_synonym_x_description():
    assert expand_class_captions(VOCABULARY, 0) == (
        "a photo of a cat", "a photo of a kitten", "A cat asleep", "A kitten asleep")
    assert expand_class_captions(VOCABULARY, 1) == (
        "a photo of an owl", "An owl at night", "An owl in a tree")


def test_corpus_is_all_classes():
    captioner = TemplateCaptioner(VOCABULARY, seed=0)
    assert captioner.corpus() == list(expand_class_captions(VOCABULARY, 0) +
                                      expand_class_captions(VOCABULARY, 1))


def test_draws_are_deterministic_and_cover_choices():
    captioner = TemplateCaptioner(VOCABULARY, seed=3)
    draws = [captioner.caption(0, sample_index=i, epoch=e) for i in range(20) for e in range(5)]
    assert draws == [TemplateCaptioner(VOCABULARY, seed=3).caption(0, sample_index=i, epoch=e)
                     for i in range(20) for e in range(5)]
    assert set(draws) == set(expand_class_captions(VOCABULARY, 0))
    by_epoch = [captioner.caption(0, sample_index=1, epoch=e) for e in range(20)]
    assert len(set(by_epoch)) > 1


def test_articles():
    assert with_article("ankle boot") == "an ankle boot"
    assert with_article("one-piece dress") == "a one-piece dress"
    assert with_article("sneaker") == "a sneaker"


def test_vocabulary_validation():
    with pytest.raises(ValueError, match="descriptions has 1 classes, synonyms 2"):
        CaptionVocabulary(synonyms=(("a",), ("b",)), descriptions=(("x",),), templates=("{noun}",))
    with pytest.raises(ValueError, match="has neither"):
        CaptionVocabulary(synonyms=(("a",),), descriptions=(("x",),), templates=("no slot",))
    with pytest.raises(ValueError, match="label must be in"):
        TemplateCaptioner(VOCABULARY, seed=0).caption(2, sample_index=0, epoch=0)

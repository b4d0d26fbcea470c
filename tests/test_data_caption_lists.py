from collections import Counter

import pytest

from cliplab.data.caption_lists import (captions_in_field, corpus_captions, drawn_caption, sample_captions,
                                         text_key)
from cliplab.data.samples import BadSampleError
from cliplab.errors import InvalidInputError


def test_plain_text_is_one_caption_as_written():
    assert captions_in_field("  a dog ", where="x") == ("  a dog ",)
    assert captions_in_field("[not json", where="x") == ("[not json",)
    assert captions_in_field("[a] dog [b]", where="x") == ("[a] dog [b]",)


def test_json_list_cell_and_list_values():
    assert captions_in_field(' ["a dog", "a brown dog"] ', where="x") == ("a dog", "a brown dog")
    assert captions_in_field(["one", "two"], where="x") == ("one", "two")
    assert captions_in_field(("one",), where="x") == ("one",)


@pytest.mark.parametrize("value, message", [
    ("[]", "x: the list of captions is empty"),
    ([], "x: the list of captions is empty"),
    ('["ok", ""]', "x: caption 1 of the list must be non-empty text, got ''"),
    (["ok", 3], "x: caption 1 of the list must be non-empty text, got 3"),
    (7, "x: expected a caption or a list of captions, got int"),
])
def test_bad_lists_are_one_line_naming_the_field(value, message):
    with pytest.raises(InvalidInputError) as raised:
        captions_in_field(value, where="x")
    assert str(raised.value) == message


def test_a_draw_depends_on_seed_epoch_and_key_only():
    captions = ("a", "b", "c", "d")
    draws = [drawn_caption(captions, seed=0, epoch=epoch, key=key) for epoch in range(50) for key in range(40)]
    assert draws == [drawn_caption(captions, seed=0, epoch=epoch, key=key) for epoch in range(50) for key in range(40)]
    assert draws != [drawn_caption(captions, seed=1, epoch=epoch, key=key) for epoch in range(50) for key in range(40)]
    counts = Counter(draws)  # 2000 draws: each caption about 500 times (4 standard deviations: 500 +- 78)
    assert set(counts) == set(captions) and all(abs(count - 500) < 78 for count in counts.values())
    by_epoch = {drawn_caption(captions, seed=0, epoch=epoch, key=7) for epoch in range(30)}
    assert by_epoch == set(captions)  # one sample sees its captions over the epochs
    assert drawn_caption(("only",), seed=3, epoch=9, key=11) == "only"


def test_text_keys_are_stable_numbers():
    # Python's hash of a str differs between processes; this one is pinned (workers, ranks and resumes agree)
    assert text_key("000000042") == 4093210645604798575 != text_key("000000043")
    assert 0 <= text_key("x") < 2 ** 63


@pytest.mark.parametrize("value, reason", [
    ("[]", "the list of captions is empty"), ([], "the list of captions is empty"),
    ('["a", ""]', "caption 1 of the list must be non-empty text, got ''"), ("   ", "empty caption"),
])
def test_a_bad_field_is_a_bad_sample_naming_its_source(value, reason):
    with pytest.raises(BadSampleError) as caught:
        sample_captions(value, source="train.tsv:3")
    assert (caught.value.source, caught.value.reason) == ("train.tsv:3", reason)


def test_sample_captions_are_stripped_and_the_corpus_skips_what_is_not_text():
    assert sample_captions(' [" a dog ", "cat"] ', source="s") == ("a dog", "cat")
    assert corpus_captions('["a", "b "]') == ["a", "b"] and corpus_captions("  ") == []
    assert corpus_captions("[]") == [] and corpus_captions(None) == [] and corpus_captions(["x", 3]) == []

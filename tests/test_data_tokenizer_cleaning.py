"""Caption cleaning: open_clip's three modes, equal to open_clip's own clean functions."""

import pytest

from cliplab.data.tokenizer_cleaning import CLEAN_MODES, clean_text, collapse_whitespace, repair_text
from reference_libraries import open_clip
from tokenizer_fixtures import ADVERSARIAL_TEXTS, random_texts


def test_closed_forms():
    assert repair_text("  &amp;amp; &lt;x&gt; “quote” ﬁne  ") == '& <x> "quote" fine'
    assert collapse_whitespace(" a\t\tb\n\u00a0c  ") == "a b c"
    assert clean_text(" Hello\tWORLD ", "whitespace") == "Hello WORLD"
    assert clean_text(" Hello\tWORLD ", "lower") == "hello world"
    assert clean_text("A snake_case, \"quoted\" text!", "canonicalize") == "a snake case quoted text"


@pytest.mark.parametrize("mode", CLEAN_MODES)
def test_equal_to_open_clips_clean_functions(mode):
    reference = open_clip().tokenizer.get_clean_fn(mode)
    for text in ADVERSARIAL_TEXTS + random_texts(300, seed=5):
        assert clean_text(text, mode) == reference(text), repr(text)


def test_unknown_mode():
    with pytest.raises(ValueError, match="clean must be one of"):
        clean_text("x", "upper")

import pytest

from cliplab.data.caption_lists import captions_in_field
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

"""Shared tokenizer pieces: framing with truncation that keeps end-of-text, text lists, roles."""

import pytest
import torch

from cliplab.data.tokenizer_base import MissingTokenError, as_text_list, frame_token_ids
from cliplab.errors import UserError


def test_framing_pads_and_truncates_keeping_end_of_text():
    tokens = frame_token_ids([[5, 6], [], [5, 6, 7, 8, 9]], 5, sot_id=1, eot_id=2, pad_id=0)
    assert tokens.tolist() == [[1, 5, 6, 2, 0], [1, 2, 0, 0, 0], [1, 5, 6, 7, 2]]
    assert tokens.dtype == torch.long
    assert frame_token_ids([], 4, sot_id=1, eot_id=2, pad_id=0).shape == (0, 4)


def test_text_lists():
    assert as_text_list("one") == ["one"]
    assert as_text_list(("a", "b")) == ["a", "b"]
    with pytest.raises(ValueError, match="texts must be a str or a sequence of str"):
        as_text_list(["a", 3])


def test_missing_token_error_is_a_user_error_and_an_attribute_error():
    assert issubclass(MissingTokenError, UserError) and issubclass(MissingTokenError, AttributeError)

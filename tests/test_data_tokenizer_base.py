"""Shared tokenizer pieces: framing with truncation that keeps end-of-text, text lists, roles."""

import pytest
import torch

from cliplab.data.tokenizer_base import MissingTokenError, as_text_list, frame_token_ids
from cliplab.errors import UserError

# session fixtures: siglip_tokenizer_dirs, spiece_model
from tokenizer_fixtures import siglip_tokenizer_dirs, spiece_model  # noqa: F401


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


@pytest.fixture(params=["cliplab_bpe", "openai_bpe", "hf", "sentencepiece"])
def tokenizer_of_each_kind(request, tmp_path_factory):
    from cliplab.data.tokenizer import Tokenizer
    from cliplab.data.tokenizer_hf import hf_tokenizer_from_dir
    from cliplab.data.tokenizer_openai import openai_bpe_tokenizer

    if request.param == "cliplab_bpe":
        return Tokenizer.train(["a photo of a cat", "two dogs on the grass"] * 20, vocab_size=300, context_length=16)
    if request.param == "openai_bpe":
        return openai_bpe_tokenizer(16)
    directories = request.getfixturevalue("siglip_tokenizer_dirs")
    return hf_tokenizer_from_dir(directories["t5" if request.param == "hf" else "spiece"], 16)


def test_every_kind_is_made_to_another_context_length(tokenizer_of_each_kind, tmp_path):
    from cliplab.data.tokenizer_files import load_tokenizer

    texts = ["a photo of a cat " * 10, "two dogs", ""]
    for length in (8, 40):
        resized = tokenizer_of_each_kind.with_context_length(length)
        assert resized.kind == tokenizer_of_each_kind.kind and resized.context_length == length
        assert torch.equal(resized(texts), tokenizer_of_each_kind(texts, context_length=length))
        resized.save_pretrained(tmp_path / str(length))
        loaded = load_tokenizer(tmp_path / str(length))
        assert loaded.context_length == length and torch.equal(loaded(texts), resized(texts))
    assert tokenizer_of_each_kind.context_length == 16 and tokenizer_of_each_kind(texts).shape == (3, 16)

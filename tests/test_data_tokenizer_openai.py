"""OpenAI BPE: ids equal to open_clip's SimpleTokenizer, vocabulary layout, framing, roles, pickling."""

import pickle

import pytest
import torch

from cliplab.data.tokenizer_base import MissingTokenError
from cliplab.data.tokenizer_openai import OpenAIBPETokenizer, merge_symbols, openai_bpe_tokenizer
from cliplab.errors import UserError
from tokenizer_fixtures import ADVERSARIAL_TEXTS, open_clip_simple_tokenizer, random_texts  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def tokenizer():
    return openai_bpe_tokenizer()


def test_adversarial_texts_give_open_clips_ids(tokenizer, open_clip_simple_tokenizer):
    for text in ADVERSARIAL_TEXTS:
        assert torch.equal(tokenizer(text), open_clip_simple_tokenizer(text)), repr(text)
    assert torch.equal(tokenizer(ADVERSARIAL_TEXTS), open_clip_simple_tokenizer(ADVERSARIAL_TEXTS))


def test_a_400_character_caption_is_truncated_like_open_clip(tokenizer, open_clip_simple_tokenizer):
    caption = ("a dog chasing a ball across a sunny beach near the water, " * 7)[:400]
    assert len(caption) == 400
    tokens = tokenizer(caption)
    assert torch.equal(tokens, open_clip_simple_tokenizer(caption))
    assert tokens[0, 0] == 49406 and tokens[0, -1] == 49407 and (tokens[0, 1:-1] != 49407).all()


def test_three_thousand_random_strings_give_open_clips_ids(tokenizer, open_clip_simple_tokenizer):
    texts = random_texts(3000, seed=11)
    ours, theirs = tokenizer(texts), open_clip_simple_tokenizer(texts)
    differing = [texts[row] for row in (ours != theirs).any(dim=1).nonzero().flatten().tolist()]
    assert differing == []


@pytest.mark.parametrize("context_length", [2, 5, 16, 76])
def test_context_lengths_match_open_clip(tokenizer, open_clip_simple_tokenizer, context_length):
    texts = ["a photo of a cat", "", ADVERSARIAL_TEXTS[6]]
    assert torch.equal(tokenizer(texts, context_length=context_length),
                       open_clip_simple_tokenizer(texts, context_length=context_length))
    assert torch.equal(openai_bpe_tokenizer(context_length)(texts),
                       open_clip_simple_tokenizer(texts, context_length=context_length))


def test_vocabulary_layout_and_roles(tokenizer, open_clip_simple_tokenizer):
    assert tokenizer.vocab_size == 49408 == open_clip_simple_tokenizer.vocab_size
    assert (tokenizer.pad_id, tokenizer.sot_id, tokenizer.eot_id) == (0, 49406, 49407)
    assert tokenizer.special_ids == {49406, 49407}
    assert tokenizer.context_length == 77
    assert tokenizer("!").tolist()[0][:3] == [49406, 256, 49407]  # "!</w>"; bare "!" is id 0
    assert tokenizer("").tolist() == [[49406, 49407] + [0] * 75]


def test_roles_it_lacks_fail_loudly_but_read_as_absent(tokenizer):
    with pytest.raises(MissingTokenError, match="openai_bpe tokenizer has no mask token"):
        tokenizer.mask_id
    with pytest.raises(UserError, match="no unk token"):
        tokenizer.unk_id
    assert getattr(tokenizer, "mask_id", None) is None and not hasattr(tokenizer, "unk_id")


def test_decode_stops_at_end_of_text_and_matches_open_clips_text(tokenizer, open_clip_simple_tokenizer):
    text = "A photo of a dog, 😀! naïve café"
    row = tokenizer(text)[0]
    body = row[1:row.tolist().index(49407)].tolist()
    assert tokenizer.decode(row) == open_clip_simple_tokenizer.decode(body).strip()
    assert tokenizer.decode(row) == "a photo of a dog , 😀! naïve café"
    assert tokenizer.batch_decode(tokenizer([text, "bag"])) == [tokenizer.decode(row), "bag"]
    with pytest.raises(ValueError, match="ids must be 1-D"):
        tokenizer.decode(tokenizer([text]))


def test_merge_rule_joins_every_occurrence_of_the_lowest_ranked_pair():
    ranks = {("a", "b"): 0, ("b", "c"): 1, ("ab", "c"): 2, ("c", "ab"): 3}
    assert merge_symbols(["a", "b", "c", "a", "b"], ranks) == ["abc", "ab"]
    assert merge_symbols(["b", "c"], ranks) == ["bc"]
    assert merge_symbols(["x", "y"], ranks) == ["x", "y"]


def test_pickles_to_the_shared_vocabulary(tokenizer):
    restored = pickle.loads(pickle.dumps(openai_bpe_tokenizer(20)))
    assert isinstance(restored, OpenAIBPETokenizer) and restored.context_length == 20
    assert restored._vocabulary is tokenizer._vocabulary
    assert torch.equal(restored(ADVERSARIAL_TEXTS), tokenizer(ADVERSARIAL_TEXTS, context_length=20))


def test_bad_inputs(tokenizer):
    with pytest.raises(ValueError, match="context_length must be an int >= 2"):
        openai_bpe_tokenizer(1)
    with pytest.raises(ValueError, match="context_length must be an int >= 2"):
        tokenizer("x", context_length=True)
    with pytest.raises(ValueError, match="texts must be a str or a sequence of str"):
        tokenizer([b"bytes"])

"""Tokenizer: BPE training, fixed-length framing, truncation keeping end-of-text, round trips, files."""

import json

import pytest
import torch

from cliplab.data.tokenizer import Tokenizer

CORPUS = ["a photo of a t-shirt", "a photo of a trouser", "a photo of a pullover", "a sketch of a dress",
          "a blurry photo of an ankle boot", "a photo of a sneaker", "a photo of a bag"] * 10


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train(CORPUS, vocab_size=300, context_length=12)


def test_special_ids_and_sizes(tokenizer):
    assert (tokenizer.pad_id, tokenizer.sot_id, tokenizer.eot_id, tokenizer.mask_id, tokenizer.unk_id) == (0, 1, 2, 3, 4)
    assert tokenizer.special_ids == {0, 1, 2, 3, 4}
    assert 261 < tokenizer.vocab_size <= 300
    assert tokenizer.context_length == 12


def test_framing_is_sot_ids_eot_then_padding(tokenizer):
    tokens = tokenizer(["a photo of a bag", "bag"])
    assert tokens.shape == (2, 12) and tokens.dtype == torch.long
    for row in tokens.tolist():
        assert row[0] == 1
        end = row.index(2)
        assert all(token not in (0, 1, 2) for token in row[1:end])
        assert row[end + 1:] == [0] * (11 - end)
    assert tokenizer("bag").shape == (1, 12)


def test_truncation_keeps_end_of_text(tokenizer):
    tokens = tokenizer(["a photo of a t-shirt " * 10])
    assert tokens[0, 0] == 1 and tokens[0, -1] == 2 and (tokens != 0).all()


@pytest.mark.parametrize("text", ["A  Photo of an ANKLE boot!", "naïve café ☕ 123", "  x\ty\nz  "])
def test_decode_inverts_encode_up_to_normalisation(text):
    tokenizer = Tokenizer.train(CORPUS, vocab_size=300, context_length=64)
    assert tokenizer.decode(tokenizer(text)[0]) == tokenizer.normalize(text)
    assert tokenizer.normalize(text) == " ".join(text.lower().split())


def test_lowercase_is_optional():
    tokenizer = Tokenizer.train(CORPUS, vocab_size=300, context_length=16, lowercase=False)
    assert tokenizer.decode(tokenizer("A Photo")[0]) == "A Photo"


def test_batch_decode_stops_at_end_of_text(tokenizer):
    ids = torch.tensor([[1, *tokenizer("bag")[0, 1:3].tolist(), 2, 50, 60]])
    assert tokenizer.batch_decode(ids) == [tokenizer.decode(tokenizer("bag")[0])]


def test_save_and_from_file_round_trip(tokenizer, tmp_path):
    path = tmp_path / "tokenizer.json"
    tokenizer.save(path)
    loaded = Tokenizer.from_file(path)
    assert loaded.context_length == 12 and loaded.vocab_size == tokenizer.vocab_size
    assert torch.equal(loaded(CORPUS[:7]), tokenizer(CORPUS[:7]))
    assert Tokenizer.from_file(path, context_length=20)("bag").shape == (1, 20)


def test_from_file_names_a_missing_special(tokenizer, tmp_path):
    path = tmp_path / "tokenizer.json"
    tokenizer.save(path)
    document = json.loads(path.read_text())
    document["added_tokens"] = [t for t in document["added_tokens"] if t["content"] != "<mask>"]
    del document["model"]["vocab"]["<mask>"]
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"no mask special token '<mask>'"):
        Tokenizer.from_file(path)
    renamed = Tokenizer.from_file(path, special_tokens={"mask": "<unk>"})
    assert renamed.mask_id == renamed.unk_id == 4


def test_bad_inputs(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="vocab_size must be an int >= 261"):
        Tokenizer.train(CORPUS, vocab_size=100, context_length=8)
    with pytest.raises(ValueError, match="context_length must be an int >= 2"):
        Tokenizer.train(CORPUS, vocab_size=300, context_length=1)
    with pytest.raises(ValueError, match="does not exist"):
        Tokenizer.from_file(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="texts must be a str or a sequence of str"):
        tokenizer([1, 2])


def test_tokenizer_pickles_for_dataloader_workers(tokenizer):
    import pickle

    restored = pickle.loads(pickle.dumps(tokenizer))
    assert torch.equal(restored(CORPUS[:3]), tokenizer(CORPUS[:3]))
    assert restored.special_ids == tokenizer.special_ids


def test_context_length_per_call(tokenizer):
    assert tokenizer(["a photo of a bag"], context_length=5).tolist() == [
        tokenizer(["a photo of a bag"])[0, :4].tolist() + [2]]
    assert tokenizer("bag", context_length=20).shape == (1, 20)
    with pytest.raises(ValueError, match="context_length must be an int >= 2"):
        tokenizer("bag", context_length=1)

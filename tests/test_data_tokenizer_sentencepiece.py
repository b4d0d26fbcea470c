"""spiece.model (Google's Hugging Face SigLIP repositories) read as transformers' SiglipTokenizer reads
it: ids equal to `SiglipTokenizer(..., padding="max_length", truncation=True)` on a SentencePiece
model trained here on captions, with Google's tokenizer_config.json or none; saved, pickled and
written back as Hugging Face files."""

import json
import pickle
import shutil

import pytest
import torch

from cliplab.data.tokenizer_files import load_tokenizer, save_tokenizer
from cliplab.data.tokenizer_hf import hf_tokenizer_from_dir, open_clip_hf_tokenizer
from cliplab.data.tokenizer_sentencepiece import SentencePieceTokenizer, sentencepiece_tokenizer_from_dir
from cliplab.errors import UserError
from reference_libraries import open_clip, transformers
# session fixtures: spiece_model, siglip_tokenizer_dirs
from tokenizer_fixtures import (ADVERSARIAL_TEXTS, SPECIAL_TEXTS, random_texts, siglip_tokenizer_dirs,  # noqa: F401
                                spiece_model)

pytestmark = pytest.mark.filterwarnings("ignore:This sequence already has:UserWarning")  # transformers, on "</s>" texts
TEXTS = ADVERSARIAL_TEXTS + SPECIAL_TEXTS + random_texts(300, seed=7) + [
    "".join(pieces) for pieces in zip(random_texts(100, seed=8), ["</s>", "<unk>", " </s> ", "▁"] * 25)]


def siglip_ids(texts, context_length=64, **options):
    reference = transformers().SiglipTokenizer(**options)
    return torch.tensor(reference(texts, padding="max_length", truncation=True, max_length=context_length).input_ids)


def bare_directory(tmp_path, spiece_model):
    directory = tmp_path / "bare"
    directory.mkdir()
    shutil.copy(spiece_model, directory / "spiece.model")
    return directory


def test_spiece_model_alone_gives_siglip_tokenizers_ids(spiece_model, tmp_path):
    ours = hf_tokenizer_from_dir(bare_directory(tmp_path, spiece_model))
    assert isinstance(ours, SentencePieceTokenizer) and ours.context_length == 64
    assert (ours.pad_id, ours.eot_id, ours.unk_id) == (1, 1, 2) and not hasattr(ours, "sot_id")
    assert torch.equal(ours(TEXTS), siglip_ids(TEXTS, vocab_file=str(spiece_model)))
    assert torch.equal(ours(TEXTS[:50], context_length=8), siglip_ids(TEXTS[:50], 8, vocab_file=str(spiece_model)))


def test_googles_tokenizer_config_gives_auto_tokenizers_ids(siglip_tokenizer_dirs):
    directory = siglip_tokenizer_dirs["spiece"]
    reference = transformers().AutoTokenizer.from_pretrained(str(directory))
    assert type(reference).__name__ == "SiglipTokenizer"
    theirs = torch.tensor(reference(TEXTS, padding="max_length", truncation=True, max_length=64).input_ids)
    assert torch.equal(hf_tokenizer_from_dir(directory)(TEXTS), theirs)


@pytest.mark.parametrize("settings", [{"do_lower_case": False}, {"eos_token": "<unk>", "pad_token": "<pad>"},
                                      {"additional_special_tokens": ["<extra>", "▁the"]},
                                      {"padding_side": "left", "truncation_side": "left"}])
def test_tokenizer_config_settings_are_read(spiece_model, tmp_path, settings):
    directory = bare_directory(tmp_path, spiece_model)
    (directory / "tokenizer_config.json").write_text(json.dumps(settings))
    options = {key: value for key, value in settings.items() if key not in ("padding_side", "truncation_side")}
    reference = transformers().SiglipTokenizer(vocab_file=str(spiece_model), **options)
    for key in ("padding_side", "truncation_side"):
        setattr(reference, key, settings.get(key, "right"))
    texts = TEXTS + ["a <extra> b", "x ▁the y"]
    theirs = torch.tensor(reference(texts, padding="max_length", truncation=True, max_length=64).input_ids)
    assert torch.equal(sentencepiece_tokenizer_from_dir(directory)(texts), theirs)


def test_open_clips_cleaning_runs_first(siglip_tokenizer_dirs):
    directory = siglip_tokenizer_dirs["spiece"]
    ours = open_clip_hf_tokenizer(directory, 64, clean="canonicalize")
    theirs = open_clip().tokenizer.HFTokenizer(str(directory), context_length=64, clean="canonicalize")
    assert torch.equal(ours(TEXTS), theirs(TEXTS))


def test_saves_loads_pickles_and_writes_hugging_face_files(siglip_tokenizer_dirs, tmp_path):
    tokenizer = hf_tokenizer_from_dir(siglip_tokenizer_dirs["spiece"])
    expected = tokenizer(TEXTS)
    assert save_tokenizer(tokenizer, tmp_path / "saved") == ["spiece.model", "cliplab_tokenizer.json"]
    assert torch.equal(load_tokenizer(tmp_path / "saved")(TEXTS), expected)
    assert torch.equal(pickle.loads(pickle.dumps(tokenizer))(TEXTS), expected)
    tokenizer.write_hf_files(tmp_path / "hf")
    reference = transformers().AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    assert type(reference).__name__ == "SiglipTokenizer"
    assert torch.equal(torch.tensor(reference(TEXTS, padding="max_length", truncation=True).input_ids), expected)
    assert tokenizer.decode(tokenizer("A Photo of a Dog!")[0]) == "a photo of a dog"


def test_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match=r"bad holds no spiece.model"):
        sentencepiece_tokenizer_from_dir(tmp_path / "bad")
    (tmp_path / "spiece.model").write_bytes(b"not a model")
    with pytest.raises(UserError, match=r"spiece.model is not a SentencePiece model"):
        sentencepiece_tokenizer_from_dir(tmp_path)

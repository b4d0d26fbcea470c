"""Tokenizers from Hugging Face directories: ids (padding included) equal to transformers'
CLIPTokenizer / AutoTokenizer and to open_clip's HFTokenizer, offline."""

import json
import shutil

import pytest
import torch

from cliplab.data.tokenizer_hf import HFTokenizer, hf_tokenizer_from_dir, open_clip_hf_tokenizer
from cliplab.errors import UserError
from reference_libraries import open_clip, transformers
# session fixtures: clip_vocab_dir, open_clip_simple_tokenizer, wordpiece_dirs
from tokenizer_fixtures import (ADVERSARIAL_TEXTS, clip_vocab_dir, open_clip_simple_tokenizer,  # noqa: F401
                                random_texts, wordpiece_dirs)

TEXTS = ADVERSARIAL_TEXTS + random_texts(300, seed=3)


def reference_ids(directory, texts, context_length, tokenizer_class="AutoTokenizer"):
    reference = getattr(transformers(), tokenizer_class).from_pretrained(str(directory))
    return reference(texts, padding="max_length", max_length=context_length, truncation=True,
                     return_tensors="pt").input_ids


def added_token(content):
    """An AddedToken entry as older transformers wrote tokenizer_config.json (the hub's CLIP files)."""
    return {"content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": True, "__type": "AddedToken"}


@pytest.fixture(scope="module")
def clip_layouts(clip_vocab_dir, tmp_path_factory):
    """The CLIP vocabulary in the layouts transformers reads: vocab.json + merges.txt only; as
    transformers 5 saves it (tokenizer.json + tokenizer_config.json); as the hub's openai/clip files
    (AddedToken dicts, special_tokens_map.json); with added_tokens_decoder entries."""
    root = tmp_path_factory.mktemp("clip_layouts")
    saved = root / "transformers_5"
    transformers().CLIPTokenizer.from_pretrained(str(clip_vocab_dir)).save_pretrained(str(saved))
    hub = root / "hub"
    shutil.copytree(clip_vocab_dir, hub)
    tokens = {"bos_token": added_token("<|startoftext|>"), "eos_token": added_token("<|endoftext|>"),
              "unk_token": added_token("<|endoftext|>"), "pad_token": "<|endoftext|>"}
    (hub / "tokenizer_config.json").write_text(json.dumps(
        {**tokens, "do_lower_case": True, "errors": "replace", "model_max_length": 77,
         "tokenizer_class": "CLIPTokenizer"}))
    (hub / "special_tokens_map.json").write_text(json.dumps(tokens))
    declared = root / "added_tokens_decoder"
    shutil.copytree(clip_vocab_dir, declared)
    entry = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": True, "special": True}
    (declared / "tokenizer_config.json").write_text(json.dumps(
        {"added_tokens_decoder": {"49406": {"content": "<|startoftext|>", **entry},
                                  "49407": {"content": "<|endoftext|>", **entry}},
         "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
         "unk_token": "<|endoftext|>", "tokenizer_class": "CLIPTokenizer"}))
    return {"vocab_files": clip_vocab_dir, "transformers_5": saved, "hub": hub, "added_tokens_decoder": declared}


@pytest.mark.parametrize("layout", ["vocab_files", "transformers_5", "hub", "added_tokens_decoder"])
def test_clip_directories_give_clip_tokenizers_ids(clip_layouts, layout):
    directory = clip_layouts[layout]
    tokenizer = hf_tokenizer_from_dir(directory, 77)
    assert torch.equal(tokenizer(TEXTS), reference_ids(directory, TEXTS, 77, "CLIPTokenizer"))
    assert torch.equal(tokenizer(TEXTS[:30], context_length=16),
                       reference_ids(directory, TEXTS[:30], 16, "CLIPTokenizer"))
    assert (tokenizer.pad_id, tokenizer.sot_id, tokenizer.eot_id, tokenizer.unk_id) == (49407, 49406, 49407, 49407)
    assert tokenizer.vocab_size == 49408 and tokenizer.clip_pipeline


def test_clip_ids_equal_open_clips_where_the_cleaning_agrees(clip_layouts, open_clip_simple_tokenizer):
    """HF CLIP has no ftfy/html step and pads with 49407; on plain text the ids up to the end of text
    are open_clip's."""
    texts = ["a photo of a cat", "Two DOGS playing in the snow!", "tabs\tand\nnewlines", "日本語 emoji 😀"]
    tokenizer = hf_tokenizer_from_dir(clip_layouts["vocab_files"])
    ours, theirs = tokenizer(texts), open_clip_simple_tokenizer(texts)
    for row, reference in zip(ours, theirs):
        end = reference.tolist().index(49407)
        assert torch.equal(row[:end + 1], reference[:end + 1]) and (row[end + 1:] == 49407).all()


def test_clip_context_length_comes_from_model_max_length(clip_layouts):
    assert hf_tokenizer_from_dir(clip_layouts["hub"]).context_length == 77
    assert hf_tokenizer_from_dir(clip_layouts["transformers_5"]).context_length == 77  # 1e30: unset
    assert hf_tokenizer_from_dir(clip_layouts["hub"], 32).context_length == 32


def test_clip_decode(clip_layouts):
    tokenizer = hf_tokenizer_from_dir(clip_layouts["vocab_files"])
    assert tokenizer.decode(tokenizer("A photo of a dog, 😀!")[0]) == "a photo of a dog , 😀!"


@pytest.mark.parametrize("saved_as", ["fast", "bert"])
def test_wordpiece_directories_give_auto_tokenizers_ids(wordpiece_dirs, saved_as):
    directory = wordpiece_dirs[saved_as]
    tokenizer = hf_tokenizer_from_dir(directory, 16)
    assert torch.equal(tokenizer(TEXTS), reference_ids(directory, TEXTS, 16))
    roles = (tokenizer.pad_id, tokenizer.unk_id, tokenizer.sot_id, tokenizer.eot_id, tokenizer.mask_id)
    assert roles == (0, 1, 2, 3, 4)
    assert tokenizer.special_ids == {0, 1, 2, 3, 4} and not tokenizer.clip_pipeline
    assert tokenizer.decode(tokenizer("a photo of the cat")[0]) == "a photo of the cat"


@pytest.mark.parametrize("saved_as", ["fast", "bert"])
@pytest.mark.parametrize("tokenizer_kwargs", [{}, {"strip_sep_token": True}, {"clean": "canonicalize"},
                                              {"clean": "lower", "strip_sep_token": True}])
def test_open_clip_hf_tokenizer_equals_open_clips(wordpiece_dirs, saved_as, tokenizer_kwargs):
    directory = wordpiece_dirs[saved_as]
    ours = open_clip_hf_tokenizer(directory, 32, **tokenizer_kwargs)
    theirs = open_clip().tokenizer.HFTokenizer(str(directory), context_length=32, **tokenizer_kwargs)
    assert torch.equal(ours(TEXTS), theirs(TEXTS))
    assert torch.equal(ours(TEXTS[:20], context_length=8), theirs(TEXTS[:20], context_length=8))


def test_left_padding_and_truncation_sides_are_read(wordpiece_dirs, tmp_path):
    directory = tmp_path / "left"
    shutil.copytree(wordpiece_dirs["fast"], directory)
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config.update(padding_side="left", truncation_side="left")
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    tokenizer = hf_tokenizer_from_dir(directory, 8)
    assert torch.equal(tokenizer(TEXTS[:40]), reference_ids(directory, TEXTS[:40], 8))
    assert tokenizer("a dog")[0, 0] == tokenizer.pad_id


def test_pickles_for_dataloader_workers(wordpiece_dirs):
    import pickle

    tokenizer = open_clip_hf_tokenizer(wordpiece_dirs["fast"], 12, strip_sep_token=True)
    restored = pickle.loads(pickle.dumps(tokenizer))
    assert isinstance(restored, HFTokenizer) and torch.equal(restored(TEXTS[:20]), tokenizer(TEXTS[:20]))


def test_errors_name_the_directory_and_what_is_missing(tmp_path, wordpiece_dirs):
    with pytest.raises(UserError, match="does not exist or is not a directory"):
        hf_tokenizer_from_dir(tmp_path / "missing")
    with pytest.raises(UserError, match=r"holds no Hugging Face tokenizer: expected tokenizer.json, vocab.json and "
                                        r"merges.txt, "
                                        r"or spiece.model"):
        hf_tokenizer_from_dir(tmp_path)
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(wordpiece_dirs["fast"] / "tokenizer.json", bare / "tokenizer.json")
    with pytest.raises(UserError, match=r"bare: the tokenizer files name no token for pad \(pad_token\), "
                                        r"eot \(eos_token or sep_token\)"):
        hf_tokenizer_from_dir(bare)
    with pytest.raises(UserError, match=r"tokenizer_kwargs \['language'\] are not supported"):
        open_clip_hf_tokenizer(wordpiece_dirs["fast"], 16, language="en")
    with pytest.raises(UserError, match="clean must be one of"):
        open_clip_hf_tokenizer(wordpiece_dirs["fast"], 16, clean="upper")

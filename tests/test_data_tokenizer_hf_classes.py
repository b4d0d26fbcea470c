"""The tokenizers of SigLIP and SigLIP2 checkpoints (T5's and Gemma's tokenizer.json, the classes
transformers 5 rebuilds from them): ids equal to transformers' AutoTokenizer and to open_clip's
HFTokenizer on the same files (offline, small vocabularies trained here), on adversarial captions."""

import json

import pytest
import torch

from cliplab.data.tokenizer_files import load_tokenizer, save_tokenizer
from cliplab.data.tokenizer_hf import HFTokenizer, hf_tokenizer_from_dir, open_clip_hf_tokenizer
from cliplab.data.tokenizer_hf_classes import tokenizer_class_name
from cliplab.data.tokenizer_hf_files import read_tokenizer_settings
from reference_libraries import open_clip, transformers
# session fixtures: spiece_model, siglip_tokenizer_dirs
from tokenizer_fixtures import (ADVERSARIAL_TEXTS, SPECIAL_TEXTS, random_texts, siglip_tokenizer_dirs,  # noqa: F401
                                spiece_model)

TEXTS = ADVERSARIAL_TEXTS + SPECIAL_TEXTS + random_texts(300, seed=5)
# (directory, the class transformers makes of it, its padding side)
LAYOUTS = [("t5", "T5Tokenizer", "right"), ("t5_sentinels", "T5Tokenizer", "right"),
           ("gemma", "GemmaTokenizer", "right"), ("gemma_defaults", "GemmaTokenizer", "left"),
           ("siglip2_model", "Siglip2Tokenizer", "left")]


def auto_tokenizer_ids(directory, texts, context_length):
    reference = transformers().AutoTokenizer.from_pretrained(str(directory))
    return reference(texts, padding="max_length", max_length=context_length, truncation=True,
                     return_tensors="pt").input_ids


@pytest.mark.parametrize("layout, class_name, padding_side", LAYOUTS)
def test_directories_give_auto_tokenizers_ids(siglip_tokenizer_dirs, layout, class_name, padding_side):
    directory = siglip_tokenizer_dirs[layout]
    ours = hf_tokenizer_from_dir(directory)
    reference = transformers().AutoTokenizer.from_pretrained(str(directory))
    assert type(reference).__name__ == ours.tokenizer_class == class_name
    assert ours.padding_side == reference.padding_side == padding_side
    assert ours.vocab_size == len(reference) and ours.context_length == 64
    assert torch.equal(ours(TEXTS), auto_tokenizer_ids(directory, TEXTS, 64))
    assert torch.equal(ours(TEXTS[:40], context_length=12), auto_tokenizer_ids(directory, TEXTS[:40], 12))


@pytest.mark.parametrize("layout", ["t5", "gemma", "gemma_defaults"])
@pytest.mark.parametrize("clean", ["canonicalize", "whitespace", "lower"])
def test_open_clip_hf_tokenizer_settings_give_open_clips_ids(siglip_tokenizer_dirs, layout, clean):
    """open_clip's SigLIP configs: hf_tokenizer_name with tokenizer_kwargs {"clean": "canonicalize"},
    context 64."""
    directory = siglip_tokenizer_dirs[layout]
    ours = open_clip_hf_tokenizer(directory, 64, clean=clean)
    theirs = open_clip().tokenizer.HFTokenizer(str(directory), context_length=64, clean=clean)
    assert torch.equal(ours(TEXTS), theirs(TEXTS))


def test_siglip_tokenizers_have_no_start_of_text(siglip_tokenizer_dirs):
    t5 = hf_tokenizer_from_dir(siglip_tokenizer_dirs["t5"])
    assert (t5.pad_id, t5.eot_id, t5.unk_id) == (1, 1, 2) and not hasattr(t5, "sot_id")
    gemma = hf_tokenizer_from_dir(siglip_tokenizer_dirs["gemma"])
    assert (gemma.pad_id, gemma.eot_id, gemma.sot_id, gemma.mask_id) == (0, 1, 2, 4)
    assert gemma.decode(gemma(["A photo of a dog"])[0]) == "A photo of a dog"


def test_rebuilt_tokenizers_save_load_and_write_hugging_face_files(siglip_tokenizer_dirs, tmp_path):
    for layout in ("t5", "siglip2_model"):
        tokenizer = hf_tokenizer_from_dir(siglip_tokenizer_dirs[layout])
        save_tokenizer(tokenizer, tmp_path / layout)
        restored = load_tokenizer(tmp_path / layout)
        assert isinstance(restored, HFTokenizer) and restored.tokenizer_class == tokenizer.tokenizer_class
        assert torch.equal(restored(TEXTS), tokenizer(TEXTS))
    written = tmp_path / "written"
    hf_tokenizer_from_dir(siglip_tokenizer_dirs["gemma"]).write_hf_files(written)
    expected = hf_tokenizer_from_dir(siglip_tokenizer_dirs["gemma"])(TEXTS)
    assert torch.equal(auto_tokenizer_ids(written, TEXTS, 64), expected)


def test_which_class_transformers_makes_of_a_directory(siglip_tokenizer_dirs, tmp_path):
    def class_of(directory):
        return tokenizer_class_name(directory, read_tokenizer_settings(directory))

    assert class_of(siglip_tokenizer_dirs["spiece"]) == "SiglipTokenizer"
    assert class_of(siglip_tokenizer_dirs["siglip2_model"]) == "Siglip2Tokenizer"  # overrides GemmaTokenizer
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "spiece.model").write_bytes((siglip_tokenizer_dirs["spiece"] / "spiece.model").read_bytes())
    assert class_of(bare) == "SiglipTokenizer"
    (bare / "config.json").write_text(json.dumps({"model_type": "clip"}))
    assert class_of(bare) == "CLIPTokenizer"
    (bare / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5TokenizerFast"}))
    assert class_of(bare) == "T5Tokenizer"

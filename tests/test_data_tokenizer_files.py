"""Every tokenizer kind saved and loaded through one pair of functions, the format-1 bundle's
tokenizer.json, Hugging Face export read back by transformers, open_clip's tokenizer choice and its
inverse (the tokenizer_kwargs and files an open_clip export holds)."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from cliplab.data.tokenizer import Tokenizer
from cliplab.data.tokenizer_files import (load_tokenizer, open_clip_tokenizer_kwargs, save_tokenizer,
                                          tokenizer_from_open_clip_config, write_hf_tokenizer_files,
                                          write_open_clip_tokenizer_files)
from cliplab.data.tokenizer_hf import HFTokenizer, hf_tokenizer_from_dir, open_clip_hf_tokenizer
from cliplab.data.tokenizer_openai import OpenAIBPETokenizer, openai_bpe_tokenizer
from cliplab.errors import UserError
from reference_libraries import open_clip, transformers
# session fixtures: clip_vocab_dir, open_clip_simple_tokenizer, wordpiece_dirs, siglip_tokenizer_dirs, spiece_model
from tokenizer_fixtures import (ADVERSARIAL_TEXTS, clip_vocab_dir, open_clip_simple_tokenizer,  # noqa: F401
                                random_texts, siglip_tokenizer_dirs, spiece_model, wordpiece_dirs)

FORMAT_1_BUNDLE = Path(__file__).parent / "fixtures" / "bundle_format_1"
TEXTS = ADVERSARIAL_TEXTS + random_texts(200, seed=7)
# Where transformers' CLIPTokenizer cannot give open_clip's ids (measured): it runs no ftfy (curly
# quotes, ligatures, full-width forms, mojibake, the BOM, "ǅ" stay), no HTML unescaping, lowercases
# a final sigma as "σ" where Python writes "ς", and matches a literal "<|endoftext|>" /
# "<|startoftext|>" as the special token while reading "<end_of_text>" as text (open_clip: the
# other way round).
HF_CLEANING_DIFFERS = {ADVERSARIAL_TEXTS[index] for index in (0, 1, 2, 7, 9, 10, 12, 15, 16, 18)}


@pytest.fixture(scope="module")
def trained():
    return Tokenizer.train(["a photo of a dog", "a picture of a cat", "an ankle boot"] * 10,
                           vocab_size=300, context_length=12)


def hf_ids(directory, texts, context_length, tokenizer_class):
    reference = getattr(transformers(), tokenizer_class).from_pretrained(str(directory))
    return reference(texts, padding="max_length", max_length=context_length, truncation=True,
                     return_tensors="pt").input_ids


def test_format_1_bundle_tokenizer_loads_unchanged():
    loaded = load_tokenizer(FORMAT_1_BUNDLE)
    direct = Tokenizer.from_file(FORMAT_1_BUNDLE / "tokenizer.json")
    assert isinstance(loaded, Tokenizer) and loaded.context_length == 12
    assert torch.equal(loaded(TEXTS), direct(TEXTS))


def test_every_kind_round_trips(tmp_path, trained, wordpiece_dirs, clip_vocab_dir):
    kinds = {"cliplab_bpe": trained, "openai_bpe": openai_bpe_tokenizer(40),
             "hf_clip": hf_tokenizer_from_dir(clip_vocab_dir, 24),
             "hf_open_clip": open_clip_hf_tokenizer(wordpiece_dirs["bert"], 16, strip_sep_token=True,
                                                    clean="canonicalize")}
    written = {}
    for name, tokenizer in kinds.items():
        written[name] = save_tokenizer(tokenizer, tmp_path / name)
        loaded = load_tokenizer(tmp_path / name)
        assert type(loaded) is type(tokenizer) and loaded.context_length == tokenizer.context_length
        assert loaded.special_ids == tokenizer.special_ids
        assert torch.equal(loaded(TEXTS), tokenizer(TEXTS)), name
    assert written == {"cliplab_bpe": ["tokenizer.json", "cliplab_tokenizer.json"],
                       "openai_bpe": ["cliplab_tokenizer.json"],
                       "hf_clip": ["tokenizer.json", "cliplab_tokenizer.json"],
                       "hf_open_clip": ["tokenizer.json", "cliplab_tokenizer.json"]}
    assert load_tokenizer(tmp_path / "hf_open_clip").settings() == kinds["hf_open_clip"].settings()


def test_renamed_special_tokens_survive_a_round_trip(tmp_path, trained):
    trained.save(tmp_path / "file.json")
    renamed = Tokenizer.from_file(tmp_path / "file.json", special_tokens={"mask": "<unk>"})
    save_tokenizer(renamed, tmp_path / "saved")
    assert load_tokenizer(tmp_path / "saved").mask_id == renamed.unk_id == 4


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match=r"holds no tokenizer: expected cliplab_tokenizer.json .* or tokenizer.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "cliplab_tokenizer.json").write_text(json.dumps({"kind": "wordlevel"}))
    with pytest.raises(UserError, match=r"cliplab_tokenizer.json: unknown tokenizer kind 'wordlevel'"):
        load_tokenizer(tmp_path)
    (tmp_path / "cliplab_tokenizer.json").write_text(json.dumps({"kind": "openai_bpe"}))
    with pytest.raises(UserError, match=r"cannot rebuild the openai_bpe tokenizer \(KeyError: 'context_length'\)"):
        load_tokenizer(tmp_path)
    (tmp_path / "cliplab_tokenizer.json").write_text("{not json")
    with pytest.raises(UserError, match="cliplab_tokenizer.json: cannot read it as JSON"):
        load_tokenizer(tmp_path)
    with pytest.raises(UserError, match="tokenizer must be a cliplab tokenizer"):
        save_tokenizer(lambda texts: texts, tmp_path)


def test_openai_bpe_export_is_read_by_clip_tokenizer(tmp_path, open_clip_simple_tokenizer):
    tokenizer = openai_bpe_tokenizer()
    written = write_hf_tokenizer_files(tokenizer, tmp_path)
    assert written == ["vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
                       "special_tokens_map.json"]
    ours = tokenizer(TEXTS)
    assert torch.equal(ours, open_clip_simple_tokenizer(TEXTS))
    assert torch.equal(hf_tokenizer_from_dir(tmp_path)(TEXTS), hf_ids(tmp_path, TEXTS, 77, "CLIPTokenizer"))
    for tokenizer_class in ("CLIPTokenizer", "CLIPTokenizerFast", "AutoTokenizer"):
        theirs = hf_ids(tmp_path, TEXTS, 77, tokenizer_class)
        differing = set()
        for text, row, reference in zip(TEXTS, ours, theirs):
            end = row.tolist().index(49407)  # HF pads with 49407 where open_clip pads with 0
            if not (torch.equal(row[:end + 1], reference[:end + 1]) and (reference[end + 1:] == 49407).all()):
                differing.add(text)
        assert differing & set(ADVERSARIAL_TEXTS) == HF_CLEANING_DIFFERS, tokenizer_class
    assert transformers().CLIPTokenizer.from_pretrained(str(tmp_path)).model_max_length == 77


def test_hf_kinds_export_back_to_equal_files(tmp_path, clip_vocab_dir, wordpiece_dirs):
    clip = hf_tokenizer_from_dir(clip_vocab_dir, 20)
    write_hf_tokenizer_files(clip, tmp_path / "clip")
    assert torch.equal(hf_ids(tmp_path / "clip", TEXTS, 20, "CLIPTokenizer"), clip(TEXTS))
    wordpiece = hf_tokenizer_from_dir(wordpiece_dirs["bert"], 16)
    write_hf_tokenizer_files(wordpiece, tmp_path / "wordpiece")
    assert torch.equal(hf_ids(tmp_path / "wordpiece", TEXTS, 16, "AutoTokenizer"), wordpiece(TEXTS))
    with pytest.raises(UserError, match=r"strip_sep_token \(open_clip.s zeroing of sep ids\) has no place"):
        write_hf_tokenizer_files(open_clip_hf_tokenizer(wordpiece_dirs["bert"], 16, strip_sep_token=True),
                                 tmp_path / "stripped")


@pytest.mark.parametrize("layout, kwargs, expected", [
    ("bert", {"strip_sep_token": True}, {"strip_sep_token": True}),
    ("bert", {"clean": "lower"}, {"clean": "lower"}),
    ("gemma_defaults", {"clean": "canonicalize"}, {"clean": "canonicalize"}),  # left padding
    ("spiece", {"clean": "canonicalize"}, {"clean": "canonicalize"}),
    ("t5", {}, {}),  # open_clip's default cleaning, "whitespace", is left out as open_clip's configs leave it
])
def test_open_clip_export_settings_and_files_give_open_clips_ids(layout, kwargs, expected, tmp_path, wordpiece_dirs,
                                                                 siglip_tokenizer_dirs):
    """`open_clip_tokenizer_kwargs` and `write_open_clip_tokenizer_files` are the inverse of
    `open_clip_hf_tokenizer`: open_clip's HFTokenizer over the written files with those kwargs gives the
    tokenizer's ids, and so does cliplab's reader of them."""
    source = {**wordpiece_dirs, **siglip_tokenizer_dirs}[layout]
    tokenizer = open_clip_hf_tokenizer(source, 24, **kwargs)
    assert open_clip_tokenizer_kwargs(tokenizer) == expected
    write_open_clip_tokenizer_files(tokenizer, tmp_path)
    ids = tokenizer(TEXTS)
    assert torch.equal(open_clip().tokenizer.HFTokenizer(str(tmp_path), context_length=24, **expected)(TEXTS), ids)
    assert torch.equal(open_clip_hf_tokenizer(tmp_path, 24, **expected)(TEXTS), ids)


def test_open_clip_cannot_run_tokenizers_without_its_cleaning(trained, siglip_tokenizer_dirs, tmp_path):
    with pytest.raises(UserError, match=r"^open_clip's HFTokenizer cannot run this cliplab_bpe tokenizer: it cleans "
                                        r"every text first"):
        open_clip_tokenizer_kwargs(trained)
    with pytest.raises(UserError, match=r"^open_clip's HFTokenizer cleans every text first .* and the model's "
                                        r"tokenizer \(read from Hugging Face files\) cleans none$"):
        write_open_clip_tokenizer_files(hf_tokenizer_from_dir(siglip_tokenizer_dirs["t5"]), tmp_path)
    assert not any(tmp_path.iterdir())


def test_trained_tokenizer_exports_as_a_generic_fast_tokenizer(tmp_path, trained):
    write_hf_tokenizer_files(trained, tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert torch.equal(hf_ids(tmp_path, TEXTS, 12, "AutoTokenizer"), trained(TEXTS))


@pytest.mark.parametrize("name", ["ViT-B-32", "RN50-quickgelu", "coca_ViT-B-32", "ViT-B-16-plus-240"])
def test_built_in_configs_pick_open_clips_tokenizer(name, open_clip_simple_tokenizer):
    library = open_clip()
    tokenizer = tokenizer_from_open_clip_config(library.get_model_config(name))
    reference = library.get_tokenizer(name)
    assert isinstance(tokenizer, OpenAIBPETokenizer) and tokenizer.context_length == reference.context_length
    assert torch.equal(tokenizer(TEXTS[:40]), reference(TEXTS[:40]))
    assert tokenizer_from_open_clip_config(library.get_model_config(name), context_length=20).context_length == 20


@pytest.mark.parametrize("name", ["ViT-L-14-CLIPA", "ViT-H-14-worldwide"])
def test_hf_tokenizer_configs_read_the_local_directory_like_open_clip(name, tmp_path, wordpiece_dirs):
    library = open_clip()
    model_cfg = library.get_model_config(name)
    directory = tmp_path / name
    shutil.copytree(wordpiece_dirs["bert"], directory)
    (directory / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {}}))
    ours = tokenizer_from_open_clip_config(model_cfg, directory=directory)
    theirs = library.get_tokenizer(f"local-dir:{directory}")
    assert isinstance(ours, HFTokenizer) and ours.context_length == theirs.context_length
    assert ours.strip_sep_token == ("CLIPA" in name)
    assert torch.equal(ours(TEXTS), theirs(TEXTS))


def put_in_hf_cache(cache: Path, repo_id: str, files: Path) -> Path:
    """`files`' contents as huggingface_hub caches repository `repo_id` (refs/main -> a snapshot)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    revision = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    shutil.copytree(files, repo / "snapshots" / revision)
    return repo / "snapshots" / revision


def test_hf_tokenizer_files_are_found_in_the_checkpoint_then_the_hugging_face_cache(tmp_path, monkeypatch,
                                                                                    siglip_tokenizer_dirs):
    """open_clip's ViT-B-16-SigLIP2 names hf_tokenizer_name timm/ViT-B-16-SigLIP2, clean canonicalize."""
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    model_cfg = open_clip().get_model_config("ViT-B-16-SigLIP2")
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    with pytest.raises(UserError, match=rf"^the Hugging Face tokenizer 'timm/ViT-B-16-SigLIP2' of this model is "
                                        rf"neither in {checkpoint} nor in the Hugging Face cache "
                                        rf"{tmp_path}/hf_home/hub: "
                                        r"put its files \(tokenizer.json \(or spiece.model\), tokenizer_config.json "
                                        r"and special_tokens_map.json\) into one of them"):
        tokenizer_from_open_clip_config(model_cfg, directory=checkpoint)
    with pytest.raises(UserError, match=r"is not in the Hugging Face cache .*or pass a directory holding them$"):
        tokenizer_from_open_clip_config(model_cfg)
    snapshot = put_in_hf_cache(tmp_path / "hf_home" / "hub", "timm/ViT-B-16-SigLIP2", siglip_tokenizer_dirs["gemma"])
    expected = open_clip().tokenizer.HFTokenizer(str(snapshot), context_length=64, clean="canonicalize")(TEXTS)
    for directory in (None, checkpoint):  # the checkpoint has no tokenizer files: the cache's
        assert torch.equal(tokenizer_from_open_clip_config(model_cfg, directory=directory)(TEXTS), expected)
    shutil.copy(siglip_tokenizer_dirs["gemma_defaults"] / "tokenizer.json", checkpoint)
    shutil.copy(siglip_tokenizer_dirs["gemma_defaults"] / "tokenizer_config.json", checkpoint)
    ours = tokenizer_from_open_clip_config(model_cfg, directory=checkpoint)  # the checkpoint's own files first
    assert ours.padding_side == "left" and not torch.equal(ours(TEXTS), expected)


def test_hf_tokenizer_configs_need_their_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty Hugging Face cache
    model_cfg = open_clip().get_model_config("ViT-L-14-CLIPA")
    with pytest.raises(UserError, match=r"the Hugging Face tokenizer 'bert-base-uncased' of this model is not in "):
        tokenizer_from_open_clip_config(model_cfg)
    with pytest.raises(UserError, match=r"tokenizer_kwargs \['clean'\] are not supported for the OpenAI BPE"):
        tokenizer_from_open_clip_config({"text_cfg": {"tokenizer_kwargs": {"clean": "canonicalize"}}})
    with pytest.raises(UserError, match="model_cfg must be a dict"):
        tokenizer_from_open_clip_config("ViT-B-32")

"""The run's tokenizer: which source wins (resumed, --tokenizer, pretrained, open_clip's own,
trained), what --tokenizer accepts, the fit checks, and a trained one: made once on the main process,
loaded by every rank, its failure every rank's."""

from pathlib import Path

import pytest

from cliplab.data import DataConfig
from cliplab.data.tokenizer import Tokenizer
from cliplab.data.tokenizer_files import save_tokenizer
from cliplab.data.tokenizer_hf import hf_tokenizer_from_dir, open_clip_hf_tokenizer
from cliplab.data.tokenizer_openai import openai_bpe_tokenizer
from cliplab.distributed.launch import run_on_workers
from cliplab.errors import UserError
from cliplab.models import get_model_config
from cliplab.train.config import ConfigError, ModelSetupConfig
from cliplab.train.setup.tokenizer import build_run_tokenizer

from data_fixtures import make_manifest
from tokenizer_fixtures import wordpiece_dirs  # noqa: F401 (a fixture)

SMALL_TEXT = {"text.context_length": 12, "text.vocab_size": 300, "text.width": 16, "text.layers": 1, "text.heads": 2}
MODEL = get_model_config("tiny", **SMALL_TEXT)
CAPTIONS = ["caption 3", "a photo of a dog!"]


def _csv(manifest, caption_key="title"):
    return DataConfig(dataset_type="csv", train_data=str(manifest), csv_caption_key=caption_key)


def _trained(directory: Path, captions: list[str]) -> Path:
    save_tokenizer(Tokenizer.train(captions, vocab_size=300, context_length=12), directory)
    return directory


def test_a_tokenizer_is_trained_on_the_captions_and_checked_against_the_text_tower(tmp_path):
    manifest = make_manifest(tmp_path / "data", 8)
    chosen = build_run_tokenizer(ModelSetupConfig(), _csv(manifest), MODEL, resume_from=None, run_dir=tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    assert chosen.origin == f"a BPE trained on the captions of the training data, saved in {tmp_path}"
    assert chosen.tokenizer(["caption 3"]).shape == (1, 12)
    again = build_run_tokenizer(ModelSetupConfig(tokenizer=str(tmp_path / "tokenizer.json")), _csv(manifest), MODEL,
                                resume_from=None, run_dir=tmp_path / "elsewhere")
    assert again.tokenizer(CAPTIONS).tolist() == chosen.tokenizer(CAPTIONS).tolist()
    longer = get_model_config("tiny", **{**SMALL_TEXT, "text.context_length": 16})
    with pytest.raises(UserError, match=rf"^the tokenizer \(--tokenizer {tmp_path}/tokenizer.json\) makes sequences "
                                        r"of 12 tokens, the text tower expects context_length 16$"):
        build_run_tokenizer(ModelSetupConfig(tokenizer=str(tmp_path / "tokenizer.json")), _csv(manifest), longer,
                            resume_from=None, run_dir=tmp_path)


def test_sources_in_order_resumed_then_given_then_pretrained_then_open_clips_own(tmp_path):
    resumed = _trained(tmp_path / "resumed", ["resumed checkpoint words"] * 3)
    given = _trained(tmp_path / "given", ["given tokenizer vocabulary"] * 3)
    pretrained = Tokenizer.train(["pretrained words only"] * 3, vocab_size=300, context_length=12)
    data = DataConfig(dataset_type="csv", train_data=str(tmp_path / "never-read.tsv"))

    def chosen(resume_from=None, **setup):
        return build_run_tokenizer(ModelSetupConfig(**setup), data, MODEL, resume_from=resume_from, run_dir=tmp_path,
                                   pretrained_tokenizer=pretrained)

    everything = {"tokenizer": str(given), "pretrained": "hub"}
    assert chosen(resume_from=resumed, **everything).origin == f"the resumed checkpoint {resumed}"
    assert chosen(**everything).origin == f"--tokenizer {given}"
    from_checkpoint = chosen(pretrained="hub")
    assert from_checkpoint.tokenizer is pretrained and from_checkpoint.origin == "the pretrained checkpoint hub"
    with pytest.raises(ConfigError, match=r"'model.tokenizer' must be given \(--tokenizer\): --pretrained hub comes "
                                          r"without a tokenizer cliplab reads, got None"):
        build_run_tokenizer(ModelSetupConfig(pretrained="hub"), data, MODEL, resume_from=None, run_dir=tmp_path)
    # An open_clip architecture brings its own (the OpenAI BPE, at the tower's context length).
    vit = get_model_config("ViT-B-32", **{"text.context_length": 32})
    own = build_run_tokenizer(ModelSetupConfig(name="ViT-B-32"), data, vit, resume_from=None, run_dir=tmp_path)
    assert own.origin == "open_clip's tokenizer for ViT-B-32"
    assert own.tokenizer(CAPTIONS).tolist() == openai_bpe_tokenizer(32)(CAPTIONS).tolist()
    assert not (tmp_path / "tokenizer.json").exists()  # nothing was trained


def test_tokenizer_flag_takes_an_open_clip_name_or_a_hugging_face_directory(tmp_path, wordpiece_dirs, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty Hugging Face cache
    data = DataConfig(dataset_type="csv", train_data=str(tmp_path / "never-read.tsv"))
    vit = get_model_config("ViT-B-32")

    def tokens(name, tokenizer, model):
        chosen = build_run_tokenizer(ModelSetupConfig(name=name, tokenizer=tokenizer), data, model, resume_from=None,
                                     run_dir=tmp_path)
        return chosen.tokenizer(CAPTIONS).tolist()

    assert tokens("ViT-B-32", "ViT-B-32-quickgelu", vit) == openai_bpe_tokenizer(77)(CAPTIONS).tolist()
    fast = wordpiece_dirs["fast"]
    assert tokens("tiny", str(fast), MODEL) == hf_tokenizer_from_dir(fast, 12)(CAPTIONS).tolist()
    # An open_clip architecture that names an HF tokenizer reads the directory as open_clip does.
    clipa = get_model_config("ViT-L-14-CLIPA")
    expected = open_clip_hf_tokenizer(wordpiece_dirs["bert"], 32, strip_sep_token=True)(CAPTIONS).tolist()
    assert tokens("ViT-L-14-CLIPA", str(wordpiece_dirs["bert"]), clipa) == expected
    with pytest.raises(UserError, match=r"Hugging Face tokenizer 'bert-base-uncased' of this model is not in the"):
        tokens("ViT-L-14-CLIPA", None, clipa)
    with pytest.raises(ConfigError, match=r"'model.tokenizer' must be a tokenizer.json file, a tokenizer directory or "
                                          r"an open_clip model name \(e.g. ViT-B-32\), got 'ViT-B-99'"):
        tokens("ViT-B-32", "ViT-B-99", vit)


def test_a_tokenizer_that_cannot_drive_the_text_tower_is_refused_naming_its_source(tmp_path):
    data = DataConfig(dataset_type="csv", train_data=str(tmp_path / "never-read.tsv"))
    with pytest.raises(UserError, match=r"^the tokenizer \(--tokenizer ViT-B-32\): tokenizer.vocab_size \(49408\) "
                                        r"exceeds the model's text.vocab_size \(300\)"):
        build_run_tokenizer(ModelSetupConfig(tokenizer="ViT-B-32"), data, MODEL, resume_from=None, run_dir=tmp_path)


def _tokenizer_on_ranks(rank, world_size, manifest, run_dirs):
    outcomes = []
    for caption_key, run_dir in zip(("title", "caption"), run_dirs):
        try:
            chosen = build_run_tokenizer(ModelSetupConfig(), _csv(manifest, caption_key), MODEL, resume_from=None,
                                         run_dir=Path(run_dir))
            outcomes.append(chosen.tokenizer(["caption 5"]).tolist())
        except UserError as error:  # the same type and message on every rank, rebuilt from rank 0's
            outcomes.append((type(error).__name__, str(error)))
    return outcomes


def test_every_rank_loads_rank_0s_tokenizer_or_raises_its_error(tmp_path):
    """Before, rank 0 raised alone and rank 1 waited at a barrier until the process-group timeout."""
    manifest = make_manifest(tmp_path / "data", 8)
    run_dirs = [str(tmp_path / "ok"), str(tmp_path / "fails")]
    for run_dir in run_dirs:
        (tmp_path / run_dir).mkdir()
    rank0, rank1 = run_on_workers(_tokenizer_on_ranks, 2, str(manifest), run_dirs, timeout_s=600)
    assert rank0 == rank1
    assert rank0[1][0] == "UserError"
    assert rank0[1][1].startswith("config key 'data.csv_caption_key' (--csv-caption-key) names 'caption', which is "
                                  "not a column of ")

"""Export: what `cliplab.export` / `cliplab export` write loads in the real open_clip
(`create_model("local-dir:DIR")`) and transformers (`CLIPModel` / `SiglipModel.from_pretrained`,
`CLIPTokenizer.from_pretrained`) with outputs equal to cliplab's (fp32, eval, 1e-5 relative); a
Hugging Face CLIP checkpoint crosses to open_clip; an open_clip export of a model whose tokenizer is
not the OpenAI BPE (SigLIP's T5 tokenizer.json or spiece.model, SigLIP2's Gemma, CLIPA's BERT) names
it as open_clip's configs do and holds its files, read back by open_clip (`local-dir:` and
`hf-hub:`) and cliplab with equal ids; unrepresentable models and tokenizers are refused by name
and a user's non-empty directory is never written into without --force."""

import dataclasses
import json
import shutil

import pytest
import torch

import cliplab
from cliplab.cli import main
from cliplab.data.tokenizer import Tokenizer
from cliplab.data.tokenizer_hf import hf_tokenizer_from_dir
from cliplab.data.tokenizer_openai import openai_bpe_tokenizer
from cliplab.errors import UserError
from cliplab.model_io import load_model
from cliplab.models import build_model, create_model
from cliplab.models.open_clip_config import UnsupportedArchitectureError, config_from_open_clip
from cliplab.pretrained.hf_config import config_from_hf
from hf_text_fixtures import use_cache
from reference_libraries import (assert_relative_close, open_clip, randomize_, reference_mode, small_open_clip_cfg,
                                 smaller_timm_towers, transformers, write_open_clip_hub)
from test_pretrained_hf_config import hf_clip, save_clip_directory
from test_pretrained_loaders import CASES, inputs
from timm_fixtures import smaller_timm_facts
# session fixtures: spiece_model, siglip_tokenizer_dirs, wordpiece_dirs
from tokenizer_fixtures import (ADVERSARIAL_TEXTS, SPECIAL_TEXTS, siglip_tokenizer_dirs, spiece_model,  # noqa: F401
                                wordpiece_dirs)

torch.set_num_threads(2)
TEXTS = ["a photo of a cat!", "two dogs", ""]
CAPTIONS = ADVERSARIAL_TEXTS + SPECIAL_TEXTS
SMALL_TIMM = {"depth": 2, "embed_dim": 64, "num_heads": 4, "img_size": 32, "patch_size": 8}
SMALL_SIGLIP_TEXT = {"width": 32, "heads": 2, "layers": 2, "vocab_size": 600, "context_length": 64}


def random_model(config, seed=7):
    torch.manual_seed(0)
    return randomize_(build_model(config), seed)


@pytest.mark.parametrize("name", ["quickgelu", "clipa", "resnet", "coca"])
def test_open_clip_export_loads_in_open_clip_with_equal_outputs(name, tmp_path):
    ours = random_model(config_from_open_clip(CASES[name]))
    directory = cliplab.export(ours, openai_bpe_tokenizer(ours.config.text.context_length), tmp_path / name,
                               format="open_clip")
    theirs = open_clip().create_model(f"local-dir:{directory}").eval()
    images, tokens = inputs(CASES[name])
    with torch.no_grad(), reference_mode():
        assert_relative_close(theirs.encode_image(images, normalize=False), ours.encode_image(images, normalize=False))
        assert_relative_close(theirs.encode_text(tokens, normalize=False), ours.encode_text(tokens, normalize=False))
        if name == "coca":
            assert_relative_close(theirs(images, tokens)["logits"], ours(images, tokens)["logits"])
    assert float(theirs.logit_scale) == float(ours.logit_scale)


def test_hf_clip_export_loads_in_transformers_with_equal_outputs_and_tokenizer(tmp_path):
    ours = random_model(config_from_hf(hf_clip().config.to_dict()))
    tokenizer = openai_bpe_tokenizer()
    ours = random_model(dataclasses.replace(ours.config, text=dataclasses.replace(ours.config.text, pad_id=0)))
    directory = cliplab.export(ours, tokenizer, tmp_path / "hf", format="hf")
    theirs = transformers().CLIPModel.from_pretrained(directory).eval()
    hf_tokens = torch.tensor(transformers().CLIPTokenizer.from_pretrained(directory)(
        TEXTS, padding="max_length", max_length=77).input_ids)
    tokens = tokenizer(TEXTS)
    # Equal up to the end of text; HF pads with 49407 where open_clip's BPE pads with 0 (T's note),
    # which a causal tower pooled at the first end-of-text never reads.
    ends = (tokens == 49407).int().argmax(1)
    for row, end in enumerate(ends.tolist()):
        assert hf_tokens[row, :end + 1].tolist() == tokens[row, :end + 1].tolist()
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert_relative_close(theirs.get_image_features(pixel_values=images).pooler_output, ours.encode_image(images))
        assert_relative_close(theirs.get_text_features(input_ids=hf_tokens).pooler_output, ours.encode_text(tokens))
    assert float(theirs.logit_scale) == float(ours.logit_scale)
    processor = transformers().CLIPImageProcessor.from_pretrained(directory)
    assert processor.crop_size == {"height": 32, "width": 32}


def test_hf_siglip_export_loads_in_transformers_with_equal_outputs(tmp_path):
    library = transformers()
    values = library.SiglipConfig(text_config=dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                                   num_attention_heads=4, vocab_size=49408, pad_token_id=0,
                                                   max_position_embeddings=16, projection_size=48),
                                  vision_config=dict(hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                                                     num_attention_heads=4, image_size=32, patch_size=8)).to_dict()
    ours = random_model(config_from_hf(values))
    directory = cliplab.export(ours, openai_bpe_tokenizer(16), tmp_path / "siglip", format="hf")
    theirs = library.SiglipModel.from_pretrained(directory).eval()
    images, tokens = torch.randn(2, 3, 32, 32), openai_bpe_tokenizer(16)(TEXTS[:2])
    with torch.no_grad():
        assert_relative_close(theirs.get_image_features(pixel_values=images).pooler_output, ours.encode_image(images))
        assert_relative_close(theirs.get_text_features(input_ids=tokens).pooler_output, ours.encode_text(tokens))
    assert (float(theirs.logit_scale), float(theirs.logit_bias)) == (float(ours.logit_scale), float(ours.logit_bias))


def test_a_hugging_face_clip_crosses_to_open_clip(tmp_path):
    reference = hf_clip(seed=5)
    loaded = load_model(save_clip_directory(reference, tmp_path / "hf"))
    exported = cliplab.export(loaded.model, loaded.tokenizer, tmp_path / "open_clip", format="open_clip")
    theirs = open_clip().create_model(f"local-dir:{exported}").eval()
    images, tokens = torch.randn(2, 3, 32, 32), open_clip().get_tokenizer(f"local-dir:{exported}")(TEXTS[:2])
    with torch.no_grad(), reference_mode():
        assert_relative_close(theirs.encode_image(images), reference.get_image_features(pixel_values=images).pooler_output)
        assert_relative_close(theirs.encode_text(tokens), reference.get_text_features(input_ids=tokens).pooler_output)


def hub_with_tokenizer(directory, model_cfg, tokenizer_dir, timm_kwargs=None):
    """An open_clip hub directory of `model_cfg` (random weights) holding the tokenizer files of
    `tokenizer_dir`; -> open_clip's model it holds."""
    reference = write_open_clip_hub(directory, model_cfg, seed=0, timm_kwargs=timm_kwargs)
    for path in tokenizer_dir.iterdir():
        shutil.copy(path, directory / path.name)
    return reference


def assert_open_clip_and_cliplab_read_back(exported, model, tokenizer, reference, timm_kwargs=None):
    """open_clip's model and tokenizer from the export, and cliplab's reload, equal `model`'s and
    `tokenizer`'s (features of `reference`, open_clip's original)."""
    ids = tokenizer(CAPTIONS)
    assert torch.equal(open_clip().get_tokenizer(f"local-dir:{exported}")(CAPTIONS), ids)
    with smaller_timm_towers(timm_kwargs or {}):
        theirs = open_clip().create_model(f"local-dir:{exported}").eval()
    side = model.config.vision.image_size
    images = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), reference_mode():
        for ours_model in (model, theirs):
            assert_relative_close(ours_model.encode_text(ids), reference.encode_text(ids))
            assert_relative_close(ours_model.encode_image(images), reference.encode_image(images))
    reloaded, _, reloaded_tokenizer = cliplab.load(exported)
    assert reloaded.config == model.config and torch.equal(reloaded_tokenizer(CAPTIONS), ids)
    assert all(torch.equal(reloaded.state_dict()[name], tensor) for name, tensor in model.state_dict().items())


@pytest.mark.parametrize("name, layout", [("ViT-B-16-SigLIP", "t5"), ("ViT-B-16-SigLIP", "spiece"),
                                          ("ViT-B-16-SigLIP2", "gemma_defaults")])
def test_a_siglip_tokenizer_travels_with_the_open_clip_export(name, layout, siglip_tokenizer_dirs, tmp_path,
                                                              monkeypatch):
    """A small SigLIP (timm_vit image tower shrunk on both sides, text tower of open_clip's) with a
    T5-like tokenizer.json, Google's spiece.model, or a Gemma-like tokenizer.json (SigLIP2's: left
    padding): cliplab reads the hub directory, exports it; the export's text_cfg names the tokenizer
    as open_clip's config does (tokenizer_kwargs clean=canonicalize), and open_clip (local-dir: and,
    from a Hugging Face cache holding the upload, hf-hub:) and cliplab read it back equal."""
    model_cfg = small_open_clip_cfg(name, embed_dim=64, text_cfg=SMALL_SIGLIP_TEXT, vision_cfg={"image_size": 32})
    reference = hub_with_tokenizer(tmp_path / "hub", model_cfg, siglip_tokenizer_dirs[layout], SMALL_TIMM)
    repository = f"cliplab-tests/{name}-{layout}"
    with smaller_timm_facts(model_cfg["vision_cfg"]["timm_model_name"], SMALL_TIMM):
        model, _, tokenizer = cliplab.load(tmp_path / "hub")
        exported = cliplab.export(model, tokenizer, tmp_path / "export", hf_tokenizer_name=repository)
        text_cfg = json.loads((exported / "open_clip_config.json").read_text())["model_cfg"]["text_cfg"]
        assert (text_cfg["hf_tokenizer_name"], text_cfg["tokenizer_kwargs"]) == (
            repository, open_clip().get_model_config(name)["text_cfg"]["tokenizer_kwargs"])
        assert_open_clip_and_cliplab_read_back(exported, model, tokenizer, reference, SMALL_TIMM)
    # The upload in the Hugging Face cache as huggingface_hub leaves it after a download (the repository's
    # missing config.json, which AutoTokenizer asks for, marked as missing).
    cached = tmp_path / "cache" / f"models--{repository.replace('/', '--')}"
    shutil.copytree(exported, cached / "snapshots" / ("0" * 40))
    for marker in (cached / "refs" / "main", cached / ".no_exist" / ("0" * 40) / "config.json"):
        marker.parent.mkdir(parents=True)
        marker.write_text("0" * 40 if marker.name == "main" else "")
    use_cache(monkeypatch, tmp_path / "cache")
    assert torch.equal(open_clip().get_tokenizer(f"hf-hub:{repository}")(CAPTIONS), tokenizer(CAPTIONS))


def test_clipas_bert_tokenizer_travels_with_strip_sep_token(wordpiece_dirs, tmp_path):
    """CLIPA's text_cfg (BERT's tokenizer, tokenizer_kwargs strip_sep_token, context 32): exported
    under the directory's own path by default, read back by open_clip and cliplab equal."""
    tokenizer_cfg = {"hf_tokenizer_name": str(wordpiece_dirs["bert"]), "tokenizer_kwargs": {"strip_sep_token": True},
                     "context_length": 32}
    model_cfg = {**CASES["clipa"], "text_cfg": {**CASES["clipa"]["text_cfg"], **tokenizer_cfg}}
    reference = hub_with_tokenizer(tmp_path / "hub", model_cfg, wordpiece_dirs["bert"])
    model, _, tokenizer = cliplab.load(tmp_path / "hub")
    exported = cliplab.export(model, tokenizer, tmp_path / "export")
    text_cfg = json.loads((exported / "open_clip_config.json").read_text())["model_cfg"]["text_cfg"]
    assert {key: text_cfg[key] for key in tokenizer_cfg} == {**tokenizer_cfg, "hf_tokenizer_name": str(exported.resolve())}
    assert_open_clip_and_cliplab_read_back(exported, model, tokenizer, reference)


def test_unrepresentable_exports_are_refused_by_name_before_writing(tmp_path, siglip_tokenizer_dirs):
    tokenizer = Tokenizer.train(["a photo of a bag"] * 5, vocab_size=300, context_length=32)
    tiny = create_model("tiny", **{"text.vocab_size": 300})
    with pytest.raises(UnsupportedArchitectureError, match=r"open_clip cannot represent this model: "
                                                           r"vision.kind='conv'"):
        cliplab.export(tiny, tokenizer, tmp_path / "a", format="open_clip")
    with pytest.raises(UnsupportedArchitectureError, match=r"CLIPModel cannot represent vision.kind='conv'"):
        cliplab.export(tiny, tokenizer, tmp_path / "b", format="hf")
    clipa = random_model(config_from_open_clip(CASES["clipa"]))
    with pytest.raises(UnsupportedArchitectureError, match=r"CLIPModel cannot represent vision.norm_pre=False "
                                                           r"\(it needs True\)"):
        cliplab.export(clipa, openai_bpe_tokenizer(), tmp_path / "c", format="hf")
    vit = random_model(config_from_open_clip(CASES["vit"]))
    with pytest.raises(UserError, match="format must be one of"):
        cliplab.export(vit, openai_bpe_tokenizer(), tmp_path / "d", format="onnx")
    with pytest.raises(UserError, match=r"^hf_tokenizer_name is an option of the open_clip export, not of format='hf'$"):
        cliplab.export(vit, openai_bpe_tokenizer(), tmp_path / "e", format="hf", hf_tokenizer_name="org/repo")
    # Tokenizers open_clip cannot run: a shorter context, no cleaning (Hugging Face files), cliplab's own BPE.
    with pytest.raises(UserError, match=r"^open_clip tokenizes to the model's text_cfg.context_length \(77\), and "
                                        r"the model's tokenizer makes 16 ids$"):
        cliplab.export(vit, openai_bpe_tokenizer(16), tmp_path / "f")
    clipa_t5 = random_model(dataclasses.replace(clipa.config, text=dataclasses.replace(clipa.config.text, pad_id=1)))
    uncleaned = hf_tokenizer_from_dir(siglip_tokenizer_dirs["t5"], 77)
    with pytest.raises(UserError, match=r"^open_clip cannot tokenize as the model's tokenizer \(HFTokenizer\): "
                                        r"open_clip's HFTokenizer cleans every text first .*and the model's tokenizer "
                                        r"\(read from Hugging Face files\) cleans none; export with format='hf' instead$"):
        cliplab.export(clipa_t5, uncleaned, tmp_path / "g")
    trained = Tokenizer.train(["a photo of a bag"] * 5, vocab_size=300, context_length=77)
    with pytest.raises(UserError, match=r"^open_clip cannot tokenize as the model's tokenizer \(Tokenizer\): "
                                        r"open_clip's HFTokenizer cannot run this cliplab_bpe tokenizer"):
        cliplab.export(clipa, trained, tmp_path / "h")
    siglip2 = random_model(config_from_hf(transformers().Siglip2Config(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=49408, pad_token_id=0),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           num_patches=16, patch_size=8)).to_dict()))
    with pytest.raises(UnsupportedArchitectureError, match=r"^open_clip cannot represent this model: "
                                                           r"vision.kind='naflex_vit' \(open_clip has no such tower\)$"):
        cliplab.export(siglip2, openai_bpe_tokenizer(siglip2.config.text.context_length), tmp_path / "i")
    assert not any(tmp_path.iterdir())


def test_a_non_empty_directory_needs_force_and_keeps_other_files(tmp_path):
    model = random_model(config_from_open_clip(CASES["vit"]))
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"--out .*out: the directory exists and is not empty; nothing was written. "
                                        r"Pass --force"):
        cliplab.export(model, openai_bpe_tokenizer(), out, format="open_clip")
    assert sorted(path.name for path in out.iterdir()) == ["notes.txt"]
    cliplab.export(model, openai_bpe_tokenizer(), out, format="open_clip", force=True)
    assert sorted(path.name for path in out.iterdir()) == ["notes.txt", "open_clip_config.json",
                                                           "open_clip_model.safetensors"]
    assert (out / "notes.txt").read_text() == "mine"


def test_export_command_writes_what_load_reads_back(tmp_path, capsys):
    model = random_model(config_from_open_clip(CASES["quickgelu"]))
    source = cliplab.export(model, openai_bpe_tokenizer(), tmp_path / "source", format="open_clip")
    assert main(["export", str(source), "--format", "open_clip", "--out", str(tmp_path / "again")]) == 0
    assert "as open_clip to" in capsys.readouterr().out
    again = load_model(tmp_path / "again").model
    for name, tensor in model.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name
    assert main(["export", str(source), "--format", "open_clip", "--out", str(tmp_path / "again")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("cliplab export: error: --out ") and "the directory exists and is not empty" in error
    assert error.count("\n") == 1
    assert main(["export", str(source), "--format", "hf", "--hf-tokenizer-name", "org/repo", "--out",
                 str(tmp_path / "hf")]) == 2
    assert capsys.readouterr().err == ("cliplab export: error: --hf-tokenizer-name names an open_clip export's "
                                       "tokenizer; --format is hf\n")

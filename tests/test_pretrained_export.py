"""Export: what `cliplab.export` / `cliplab export` write loads in the real open_clip
(`create_model("local-dir:DIR")`) and transformers (`CLIPModel` / `SiglipModel.from_pretrained`,
`CLIPTokenizer.from_pretrained`) with outputs equal to cliplab's (fp32, eval, 1e-5 relative); a
Hugging Face CLIP checkpoint crosses to open_clip; unrepresentable models are refused by name and
a user's non-empty directory is never written into without --force."""

import dataclasses

import pytest
import torch

import cliplab
from cliplab.bundle import load_model
from cliplab.cli import main
from cliplab.data.tokenizer import Tokenizer
from cliplab.data.tokenizer_openai import openai_bpe_tokenizer
from cliplab.errors import UserError
from cliplab.models import build_model, create_model
from cliplab.models.open_clip_config import UnsupportedArchitectureError, config_from_open_clip
from cliplab.pretrained.hf_config import config_from_hf
from reference_libraries import assert_relative_close, open_clip, randomize_, reference_mode, transformers
from test_pretrained_hf_config import hf_clip, save_clip_directory
from test_pretrained_loaders import CASES, inputs

torch.set_num_threads(2)
TEXTS = ["a photo of a cat!", "two dogs", ""]


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


def test_unrepresentable_exports_are_refused_by_name_before_writing(tmp_path):
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

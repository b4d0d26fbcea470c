"""Tower family naflex_vit: a Hugging Face Siglip2Model directory (NaFlex, random weights from a small
Siglip2Config, with a SigLIP2-like Gemma tokenizer) loads in cliplab with encode_image on the
processor's three tensors (and on cliplab's own NaFlex preprocessing, and on fixed-resolution image
tensors) equal to get_image_features, encode_text equal to get_text_features (fp32, eval, 1e-5
relative), the tokenizer's ids equal to AutoTokenizer's; it exports back to a directory transformers
loads with the same outputs; it fine-tunes from --pretrained at a fixed resolution."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import cliplab
from cliplab.model_io import load_model
from cliplab.data.naflex import NaFlexPreprocess, image_patches
from cliplab.data.tokenizer_hf import hf_tokenizer_from_dir
from cliplab.errors import UserError
from cliplab.losses import SigLipLoss
from cliplab.models import build_model
from cliplab.models.families import family_of
from cliplab.models.open_clip_config import UnsupportedArchitectureError
from cliplab.pretrained.hf_config import config_from_hf
from cliplab.train import TrainHooks, train

from data_fixtures import make_manifest
from finetune_fixtures import finetune_config
from reference_libraries import assert_relative_close, randomize_, transformers
# session fixtures: spiece_model, siglip_tokenizer_dirs
from tokenizer_fixtures import siglip_tokenizer_dirs, spiece_model  # noqa: F401

torch.set_num_threads(2)
PATCH, MAX_PATCHES = 4, 36  # 6 x 6 patches for a square image: the fixed resolution is 24 pixels
TEXTS = ["A photo of a DOG!", "two cats", "", "the " * 30]
SIZES = [(20, 50), (64, 64), (9, 100), (40, 23)]


def hf_siglip2(seed=3):
    library = transformers()
    config = library.Siglip2Config(
        text_config=dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                         vocab_size=600, max_position_embeddings=16, pad_token_id=0, eos_token_id=1,
                         bos_token_id=2),
        vision_config=dict(hidden_size=64, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
                           patch_size=PATCH, num_patches=16))
    torch.manual_seed(0)
    return randomize_(library.Siglip2Model(config), seed)


def processor():
    module = pytest.importorskip("transformers.models.siglip2.image_processing_pil_siglip2")
    return module.Siglip2ImageProcessorPil(patch_size=PATCH, max_num_patches=MAX_PATCHES, do_convert_rgb=True)


def pil_images():
    generator = np.random.default_rng(0)
    return [Image.fromarray(generator.integers(0, 256, (height, width, 3), dtype=np.uint8)) for height, width in SIZES]


@pytest.fixture(scope="module")
def siglip2(tmp_path_factory, siglip_tokenizer_dirs):
    """(the reference model, its directory: weights, preprocessor_config.json, Gemma tokenizer files)."""
    reference = hf_siglip2()
    directory = tmp_path_factory.mktemp("siglip2") / "hf"
    reference.save_pretrained(directory)
    processor().save_pretrained(directory)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(siglip_tokenizer_dirs["gemma"] / name, directory / name)
    return reference, directory


def assert_same_outputs(ours, reference, tokenizer):
    inputs = processor()(pil_images(), return_tensors="pt")
    square = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    full_grid = {"pixel_values": image_patches(square, PATCH), "spatial_shapes": torch.tensor([[6, 6]] * 2),
                 "pixel_attention_mask": torch.ones(2, MAX_PATCHES, dtype=torch.int32)}
    tokens = tokenizer(TEXTS)
    with torch.no_grad():
        assert_relative_close(ours.encode_image(inputs), reference.get_image_features(**inputs).pooler_output)
        assert_relative_close(ours.encode_image(square), reference.get_image_features(**full_grid).pooler_output)
        assert_relative_close(ours.encode_text(tokens), reference.get_text_features(input_ids=tokens).pooler_output)
    assert ours.logit_scale.item() == reference.logit_scale.item()
    assert ours.logit_bias.item() == reference.logit_bias.item()


def test_siglip2_directory_loads_exactly_with_its_tokenizer_and_preprocessing(siglip2):
    reference, directory = siglip2
    loaded = load_model(directory)
    config = loaded.model.config
    assert loaded.format == "hf" and config.kind == "siglip" and config.vision.kind == "naflex_vit"
    assert (config.vision.position_grid, config.vision.max_num_patches, config.vision.image_size) == (4, 36, 24)
    assert (config.preprocess.resize_mode, config.preprocess.interpolation) == ("squash", "bilinear")
    assert_same_outputs(loaded.model, reference, loaded.tokenizer)
    ours = NaFlexPreprocess(config.preprocess, PATCH, MAX_PATCHES)(pil_images())
    with torch.no_grad():  # cliplab's own preprocessing, end to end
        theirs = reference.get_image_features(**processor()(pil_images(), return_tensors="pt")).pooler_output
        assert_relative_close(loaded.model.encode_image(ours), theirs)
    hf_ids = transformers().AutoTokenizer.from_pretrained(str(directory))(
        TEXTS, padding="max_length", max_length=16, truncation=True, return_tensors="pt").input_ids
    assert loaded.tokenizer.tokenizer_class == "Siglip2Tokenizer" and torch.equal(loaded.tokenizer(TEXTS), hf_ids)


def test_export_to_hugging_face_round_trips(siglip2, siglip_tokenizer_dirs, tmp_path):
    reference, directory = siglip2
    loaded = load_model(directory)
    exported = cliplab.export(loaded.model, loaded.tokenizer, tmp_path / "export", format="hf")
    values = json.loads((exported / "config.json").read_text())
    assert values["model_type"] == "siglip2" and values["vision_config"]["num_patches"] == 16
    theirs = transformers().Siglip2Model.from_pretrained(exported).eval()
    assert_same_outputs(loaded.model, theirs, loaded.tokenizer)
    hf_ids = transformers().AutoTokenizer.from_pretrained(str(exported))(
        TEXTS, padding="max_length", max_length=16, truncation=True, return_tensors="pt").input_ids
    assert torch.equal(loaded.tokenizer(TEXTS), hf_ids)
    assert json.loads((exported / "preprocessor_config.json").read_text())["max_num_patches"] == MAX_PATCHES
    again = load_model(exported)
    assert again.model.config == loaded.model.config
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[name], tensor), name
    gemma = hf_tokenizer_from_dir(siglip_tokenizer_dirs["gemma"], 16)  # Gemma's pipeline, not lowercased
    with pytest.raises(UserError, match=r"transformers reads the tokenizer of a siglip2 directory as "
                                        r"Siglip2Tokenizer, which the model's tokenizer \(HFTokenizer\) is not"):
        cliplab.export(loaded.model, gemma, tmp_path / "refused", format="hf")
    assert not (tmp_path / "refused").exists()


def test_blocks_are_the_fsdp_units_and_lock_groups(siglip2):
    model = build_model(load_model(siglip2[1], device="meta").model.config)
    tower = model.vision_tower
    assert family_of(model.config.vision).fsdp_units(tower) == list(tower.transformer.blocks)
    model.lock_image_tower(unlocked_groups=1)
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    head = ("vision_tower.norm_post", "vision_tower.pooler")
    assert {name for name in trainable if name.startswith("vision_tower")} == {
        name for name, _ in model.named_parameters() if name.startswith(head)}
    assert len(family_of(model.config.vision).lock_groups(tower)) == 2 + 2  # embeddings, 2 blocks, head


def test_fine_tunes_from_the_directory_at_a_fixed_resolution(siglip2, tmp_path):
    """--pretrained DIR --siglip: the first step's loss is the loaded model's SigLIP loss on the batch
    (images squashed to 24 x 24, the Gemma tokenizer's ids); the run's checkpoint keeps the family."""
    batches, losses = [], []
    hooks = TrainHooks(modify_loss=lambda step, output: losses.append(output.total.detach().clone()) or output,
                       after_batches=lambda step, seen: batches.append(seen))
    config = finetune_config(tmp_path, make_manifest(tmp_path / "data", 8), siglip2[1], steps=2)
    config.loss.siglip = True
    train(config, hooks=hooks)
    images, tokens = batches[0][0]["images"], batches[0][0]["tokens"]
    assert tuple(images.shape[1:]) == (3, 24, 24)
    pretrained = load_model(siglip2[1], output_dict=True).model.train()
    output = pretrained(images, tokens)
    expected = SigLipLoss()(output["image_features"], output["text_features"], output["logit_scale"],
                            output["logit_bias"])
    torch.testing.assert_close(losses[0], expected, rtol=1e-5, atol=0)
    checkpoint = load_model(tmp_path / "finetune")
    assert checkpoint.model.config.vision.kind == "naflex_vit" and checkpoint.tokenizer(TEXTS).shape == (4, 16)


def test_unsupported_siglip2_configs_are_refused(siglip2):
    values = json.loads((siglip2[1] / "config.json").read_text())
    values["vision_config"]["num_patches"] = 15
    with pytest.raises(UnsupportedArchitectureError, match=r"num_patches=15: the position table must be a square"):
        config_from_hf(values)
    values["vision_config"]["num_patches"] = 16
    with pytest.raises(UnsupportedArchitectureError, match=r"preprocessor_config.json patch_size=16: the model's "
                                                           r"patches are 4 pixels wide"):
        config_from_hf(values, {"patch_size": 16})
    with pytest.raises(ValueError, match=r"images must be a float tensor \[B, 3, H, W\] with H and W multiples of 4"):
        build_model(config_from_hf(values)).encode_image(torch.zeros(1, 3, 10, 12))

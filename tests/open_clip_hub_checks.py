"""Checks of open_clip hub directories the family tests share: the eval preprocessing of a
built-in name's hub directory against open_clip's in closed form, and a real-size hub directory
loaded by `cliplab.load` and exported back to open_clip, with open_clip's features both ways."""

import json

import numpy as np
import torch
from PIL import Image

from cliplab.bundle import load_model
from cliplab.models.open_clip_config import builtin_open_clip_config
from reference_libraries import assert_relative_close, open_clip, reference_mode, write_open_clip_hub


def assert_hub_preprocessing_equals_open_clips(name: str, tag: str, directory) -> None:
    """An open_clip hub directory of `name` whose preprocess_cfg is open_clip's pretrained config
    `tag` (as open_clip writes it): cliplab's eval transform of a 3:2 PIL image equals open_clip's.
    open_clip's eval transform is torchvision's Resize (+ CenterCrop) handing PIL images to PIL,
    written out here (torchvision does not import here): "squash" resizes to the square, "shortest"
    resizes the short side to the size (long side int(size * 3 / 2)) and crops the centre."""
    library = open_clip()
    size = builtin_open_clip_config(name)["vision_cfg"]["image_size"]
    preprocess_cfg = library.transform.merge_preprocess_dict(library.transform.PreprocessCfg(size=size),
                                                             library.get_pretrained_cfg(name, tag))
    (directory / "open_clip_config.json").write_text(json.dumps({"model_cfg": builtin_open_clip_config(name),
                                                                 "preprocess_cfg": preprocess_cfg}))
    (directory / "open_clip_model.safetensors").write_bytes(b"")  # a meta build reads no weights
    transform = load_model(directory, device="meta", require_tokenizer=False).preprocess
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8))
    resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[preprocess_cfg["interpolation"]]
    if preprocess_cfg["resize_mode"] == "squash":
        expected = image.resize((size, size), resample)
    else:
        assert preprocess_cfg["resize_mode"] == "shortest"
        expected = image.resize((3 * size // 2, size), resample).crop((size // 4, 0, size // 4 + size, size))
    pixels = torch.from_numpy(np.asarray(expected, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255
    mean, std = (torch.tensor(preprocess_cfg[key], dtype=torch.float32).view(3, 1, 1) for key in ("mean", "std"))
    assert torch.equal(transform(image), (pixels - mean) / std)


def assert_hub_directory_loads_and_exports_back(name: str, tag: str, directory, texts: list[str]):
    """open_clip's `name` at real size with random weights (and BatchNorm statistics) in an open_clip
    hub directory (preprocess_cfg: its pretrained config `tag`), loaded by `cliplab.load`: open_clip's
    encode_image, encode_text and logit_scale; cliplab's export read by open_clip: the same features.
    -> (cliplab's model, images, open_clip's image features), for further checks."""
    import cliplab

    reference = write_open_clip_hub(directory / "hub", open_clip().get_model_config(name), seed=0,
                                    preprocess_cfg=dict(open_clip().get_pretrained_cfg(name, tag)))
    ours, _, tokenizer = cliplab.load(directory / "hub")
    size = ours.config.vision.image_size
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(5))
    tokens = tokenizer(texts)
    with torch.no_grad(), reference_mode():
        expected = reference.encode_image(images), reference.encode_text(tokens)
        assert all(torch.isfinite(features).all() for features in expected)
        assert_relative_close(ours.encode_image(images), expected[0])
        assert_relative_close(ours.encode_text(tokens), expected[1])
        assert torch.equal(ours.logit_scale, reference.logit_scale)
        del reference
        exported = cliplab.export(ours, tokenizer, directory / "export", format="open_clip")
        theirs = open_clip().create_model(f"local-dir:{exported}",
                                          pretrained=f"{exported}/open_clip_model.safetensors").eval()
        assert_relative_close(theirs.encode_image(images), expected[0])
        assert_relative_close(theirs.encode_text(tokens), expected[1])
    return ours, images, expected[0]

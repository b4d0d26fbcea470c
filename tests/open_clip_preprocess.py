"""open_clip's eval preprocessing of a built-in name's hub directory as open_clip's pretrained table
writes it, in closed form, for the family tests (meta device: no weights): cliplab's transform must
equal it tensor for tensor."""

import json

import numpy as np
import torch
from PIL import Image

from cliplab.model_io import load_model
from cliplab.models.open_clip_config import builtin_open_clip_config
from reference_libraries import open_clip


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


"""Small variants of open_clip's models with a timm image tower (random weights, timm's own options
with fewer and narrower blocks) and cliplab's configs of the same sizes, for the timm families'
tests: built side by side, and as open_clip hub directories."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cliplab.data.preprocess_config import PreprocessConfig
from cliplab.data.tokenizer_openai import openai_bpe_tokenizer
from cliplab.data.transforms import image_transform
from cliplab.models import build_model, timm_models
from cliplab.models.families import family_of
from cliplab.models.open_clip_config import config_from_open_clip
from cliplab.pretrained.key_maps import from_cliplab, to_cliplab
from cliplab.pretrained.loaders import build_model_from, read_open_clip_hub
from cliplab.pretrained.open_clip_keys import open_clip_rules
from reference_libraries import (assert_relative_close, open_clip, open_clip_model, randomize_, reference_mode,
                                 small_open_clip_cfg, smaller_timm_towers, write_open_clip_hub)

SMALL_TEXT = {"width": 32, "heads": 2, "layers": 2}
TEXTS = ["a photo of a cat!", "two dogs", ""]


@contextlib.contextmanager
def smaller_timm_facts(name: str, timm_kwargs: dict):
    """While inside, cliplab's timm facts (`cliplab.models.timm_models`) say that timm builds `name`
    with `timm_kwargs` added to its arguments: cliplab's side of `smaller_timm_towers`, so that a
    small variant of a timm tower reads from, and exports to, an open_clip config naming `name`."""
    document = copy.deepcopy(timm_models._document())
    document["models"][name]["kwargs"].update(timm_kwargs)
    original = timm_models._document
    timm_models._document = lambda: document
    try:
        yield
    finally:
        timm_models._document = original


@dataclasses.dataclass(frozen=True)
class SmallTimmTower:
    """open_clip name, timm's keyword overrides that shrink its tower, the same sizes as cliplab
    config fields, and the image side of both."""

    name: str
    timm_kwargs: dict
    vision: dict
    image_size: int

    def model_cfg(self) -> dict:
        """open_clip's model_cfg with a small text tower and the small image side."""
        return small_open_clip_cfg(self.name, embed_dim=32, text_cfg=SMALL_TEXT,
                                   vision_cfg={"image_size": self.image_size})

    def config(self):
        """cliplab's ModelConfig of the same model (read from open_clip's config, resized)."""
        full = config_from_open_clip(small_open_clip_cfg(self.name, embed_dim=32, text_cfg=SMALL_TEXT))
        vision = dataclasses.replace(full.vision, image_size=self.image_size, **self.vision)
        return dataclasses.replace(full, vision=vision, preprocess=PreprocessConfig(image_size=self.image_size))

    def reference(self, seed: int = 3) -> torch.nn.Module:
        """open_clip's model with seeded random weights, eval mode."""
        return randomize_(open_clip_model(self.model_cfg(), timm_kwargs=self.timm_kwargs), seed=seed)

    def images(self, count: int = 3, seed: int = 4) -> torch.Tensor:
        return torch.randn(count, 3, self.image_size, self.image_size, generator=torch.Generator().manual_seed(seed))

    def write_hub(self, directory: Path, preprocess_cfg: dict, seed: int = 5) -> torch.nn.Module:
        """An open_clip hub directory of the small model; -> open_clip's model it holds."""
        return write_open_clip_hub(directory, self.model_cfg(), seed=seed, preprocess_cfg=preprocess_cfg,
                                   timm_kwargs=self.timm_kwargs)

    def open_clip_from_hub(self, directory: Path) -> torch.nn.Module:
        """open_clip's own factory reading the hub directory (its preprocess_cfg resolution included)."""
        with smaller_timm_towers(self.timm_kwargs):
            return open_clip().create_model(f"local-dir:{directory}").eval()

    def cliplab_from_hub(self, directory: Path) -> torch.nn.Module:
        """cliplab's reader of the hub directory (`cliplab.load`'s for this format), the tower
        resized as open_clip's timm tower was: the hub's config names the full-size timm model."""
        checkpoint = read_open_clip_hub(directory)
        vision = dataclasses.replace(checkpoint.config.vision, **self.vision)
        return build_model_from(dataclasses.replace(checkpoint, config=dataclasses.replace(checkpoint.config,
                                                                                           vision=vision)))


def loaded_from(reference: torch.nn.Module, config) -> torch.nn.Module:
    """cliplab's model of `config` holding `reference`'s weights through the family's key rules
    (checked both ways: back to open_clip's names, every tensor equal), eval mode. The text tower's
    names are under "text." when `reference` is open_clip's CustomTextCLIP (`custom_text` configs)."""
    ours = build_model(config).eval()
    theirs = reference.state_dict()
    rules = open_clip_rules(config, "text." if "text.token_embedding.weight" in theirs else "")
    ours.load_state_dict(to_cliplab(theirs, ours.state_dict(), rules, "open_clip"))
    back = from_cliplab(ours.state_dict(), rules)
    assert sorted(back) == sorted(theirs)
    assert all(torch.equal(back[name], theirs[name]) for name in back)
    return ours


def side_by_side(small: SmallTimmTower) -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor]:
    """(open_clip's small model, cliplab's holding its weights through the key rules (`loaded_from`),
    the small images)."""
    reference = small.reference()
    return reference, loaded_from(reference, small.config()), small.images()


def assert_same_features(ours: torch.nn.Module, reference: torch.nn.Module, images: torch.Tensor) -> None:
    """encode_image, encode_text and logit_scale equal (fp32, eval: 1e-5 relative)."""
    tokens = openai_bpe_tokenizer(77)(TEXTS)
    with torch.no_grad(), reference_mode():
        assert_relative_close(ours.encode_image(images), reference.encode_image(images))
        assert_relative_close(ours.encode_text(tokens), reference.encode_text(tokens))
        assert float(ours.logit_scale.exp()) == float(reference.logit_scale.exp())


def requires_grad_by_open_clip_name(model: torch.nn.Module, rules=None) -> dict[str, bool]:
    """Whether each image-tower parameter trains, by open_clip name (cliplab's through `rules`)."""
    flags = {name: torch.full(parameter.shape, float(parameter.requires_grad))
             for name, parameter in model.named_parameters()}
    named = from_cliplab(flags, rules) if rules is not None else flags
    return {name: bool(flag.flatten()[0]) for name, flag in named.items() if name.startswith("visual.")}


def assert_eval_preprocessing_is_open_clips(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    """cliplab's model read from a hub directory has the eval preprocessing open_clip resolved for it
    (`theirs.visual.preprocess_cfg`), and on PIL images of other shapes it gives open_clip's eval
    pixels: resize of the short side to S (PIL, open_clip's interpolation), center crop, [0, 1]
    scaling, mean/std (torchvision hands PIL images to PIL's resize)."""
    resolved = theirs.visual.preprocess_cfg
    config = PreprocessConfig.from_open_clip(resolved, resolved["size"])
    assert ours.config.preprocess == config
    transform = image_transform(ours.config.preprocess, train=False)
    assert config.resize_mode == "shortest" and config.interpolation in ("bicubic", "bilinear")
    side = config.image_size
    resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[config.interpolation]
    mean, std = torch.tensor(config.mean).view(3, 1, 1), torch.tensor(config.std).view(3, 1, 1)
    for width, height in [(side * 2 + 3, side + 5), (side - 3, side * 3)]:
        image = Image.fromarray(np.random.default_rng(width).integers(0, 256, (height, width, 3), dtype=np.uint8))
        long_side = int(side * max(width, height) / min(width, height))  # torchvision's rule: truncated
        resized_width, resized_height = (long_side, side) if width > height else (side, long_side)
        left, top = round((resized_width - side) / 2.0), round((resized_height - side) / 2.0)
        expected = image.resize((resized_width, resized_height), resample).crop((left, top, left + side, top + side))
        pixels = torch.from_numpy(np.asarray(expected, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
        assert torch.equal(transform(image), (pixels - mean) / std)


def assert_hub_directory_loads_as_open_clips(small: SmallTimmTower, directory: Path, preprocess_cfg: dict) -> None:
    """An open_clip hub directory of the small model (`write_hub`, with `preprocess_cfg`) reads in
    cliplab with open_clip's features and eval preprocessing."""
    small.write_hub(directory, preprocess_cfg)
    theirs, ours = small.open_clip_from_hub(directory), small.cliplab_from_hub(directory)
    assert_same_features(ours, theirs, small.images(2))
    assert_eval_preprocessing_is_open_clips(ours, theirs)


def assert_refused_by_name(name: str, vision_change: dict, message: str) -> None:
    """open_clip's built-in config `name`, its vision_cfg updated with `vision_change`, is refused:
    an UnsupportedArchitectureError whose message matches `message`."""
    import pytest

    from cliplab.errors import UnsupportedArchitectureError
    from cliplab.models.open_clip_config import builtin_open_clip_config

    model_cfg = builtin_open_clip_config(name)
    model_cfg["vision_cfg"].update(vision_change)
    with pytest.raises(UnsupportedArchitectureError, match=message):
        config_from_open_clip(model_cfg)


def _open_clip_names(parameters: list[torch.nn.Parameter], model: torch.nn.Module, rules) -> list[str]:
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    return sorted(from_cliplab({names[id(p)]: p.detach() for p in parameters}, rules))


def assert_groups_are_timms(small: SmallTimmTower) -> None:
    """The family's lock groups, by open_clip name, are timm's `group_parameters` of the trunk (the
    projection joins the last group when it is timm's classifier: `projection_locked`)."""
    from reference_libraries import timm

    trunk = small.reference().visual.trunk
    theirs = timm().models._manipulate.group_parameters(trunk, trunk.group_matcher())
    ours = build_model(small.config())
    rules = open_clip_rules(ours.config)
    tower_groups = ours.vision_tower.parameter_groups()
    if family_of(ours.config.vision).projection_locked(ours.config.vision):
        tower_groups[-1] = [*tower_groups[-1], ours.image_projection]
    groups = [[parameter for item in group for parameter in
               ([item] if isinstance(item, torch.nn.Parameter) else item.parameters())]
              for group in tower_groups]
    assert [_open_clip_names(group, ours, rules) for group in groups] == \
        [sorted(f"visual.trunk.{name}" for name in theirs[index]) for index in sorted(theirs)]


def assert_lock_is_open_clips(small: SmallTimmTower, unlocked_groups: list[int]) -> None:
    """`lock_image_tower(n)` leaves trainable exactly what open_clip's `lock_image_tower(n)` (its
    TimmModel.lock: the trunk's groups, never `visual.head`) leaves trainable, for each n."""
    import copy

    reference, model = small.reference(), build_model(small.config())
    for count in unlocked_groups:
        theirs, ours = copy.deepcopy(reference), copy.deepcopy(model)
        theirs.lock_image_tower(unlocked_groups=count)
        ours.lock_image_tower(unlocked_groups=count)
        assert requires_grad_by_open_clip_name(ours, open_clip_rules(ours.config)) == \
            requires_grad_by_open_clip_name(theirs), count


def assert_checkpointing_changes_nothing_and_every_parameter_learns(small: SmallTimmTower) -> None:
    """In train mode (stochastic depth on, the same draws), gradient checkpointing gives bitwise the
    same gradients, and every parameter gets a finite, non-zero one."""
    torch.manual_seed(0)
    model = build_model(small.config()).train()
    images, tokens = small.images(4), openai_bpe_tokenizer(77)(["a", "b", "c", "d"])

    def gradients():
        torch.manual_seed(1)
        model.zero_grad()
        image, text, scale = model(images, tokens)
        (scale * image @ text.T).logsumexp(dim=1).mean().backward()
        return {name: parameter.grad.clone() for name, parameter in model.named_parameters()}

    plain = gradients()
    model.set_grad_checkpointing(True)
    checkpointed = gradients()
    assert plain.keys() == {name for name, _ in model.named_parameters()}
    assert all(torch.equal(plain[name], checkpointed[name]) for name in plain)
    assert all(torch.isfinite(gradient).all() and gradient.abs().sum() > 0 for gradient in plain.values())


def assert_real_size_round_trip(name: str, preprocess_cfg: dict, directory: Path) -> None:
    """open_clip's model of built-in `name` at real size with random weights, as a hub directory:
    `cliplab.load_model` reads it with open_clip's features and eval preprocessing, and cliplab's
    export of it is read by open_clip with the same features."""
    from cliplab.model_io import load_model
    from cliplab.models.open_clip_config import builtin_open_clip_config
    from cliplab.pretrained.export import export

    reference = write_open_clip_hub(directory / "hub", builtin_open_clip_config(name), seed=7,
                                    preprocess_cfg=preprocess_cfg)
    loaded = load_model(directory / "hub")
    side = loaded.model.config.vision.image_size
    images = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(5))
    assert_same_features(loaded.model, reference, images)
    assert_eval_preprocessing_is_open_clips(loaded.model, open_clip().create_model(f"local-dir:{directory / 'hub'}"))
    exported = export(loaded.model, openai_bpe_tokenizer(77), directory / "export", format="open_clip")
    again = open_clip().create_model(f"local-dir:{exported}", pretrained=f"{exported}/open_clip_model.safetensors")
    assert_same_features(loaded.model, again.eval(), images)


def noise_manifest(directory: Path, count: int) -> Path:
    """`count` random-noise 16x16 RGB PNGs captioned "caption i", in make_manifest's TSV layout. Not
    flat colours: on those every token of a window is the same, and attention is blind to its
    position bias (a zero gradient)."""
    (directory / "images").mkdir(parents=True, exist_ok=True)
    lines = ["filepath\ttitle\tlabel"]
    for index in range(count):
        pixels = np.random.default_rng(index).integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(directory / "images" / f"{index}.png")
        lines.append(f"images/{index}.png\tcaption {index}\t{index % 10}")
    (directory / "manifest.tsv").write_text("\n".join(lines) + "\n")
    return directory / "manifest.tsv"


def assert_trains_on_a_csv(name: str, overrides: dict, manifest: Path, logs: Path) -> None:
    """`name` shrunk by `overrides` trains 3 steps on the CSV `manifest` (`noise_manifest`) from
    scratch: finite losses, and every parameter moves between the first step and the last."""
    from cliplab.train import TrainHooks, train
    from cliplab.train.config import ModelSetupConfig
    from train_helpers import csv_config

    config = csv_config(logs, manifest, batch_size=4, epochs=2)
    config.model = ModelSetupConfig(name=name, overrides=dict(overrides))
    config.loop.max_steps = 3
    snapshots, losses = {}, []

    def after_step(step, model):
        snapshots[step] = {key: value.detach().clone() for key, value in model.named_parameters()}

    def modify_loss(step, output):
        losses.append(float(output.total.detach()))
        return output

    result = train(config, hooks=TrainHooks(after_step=after_step, modify_loss=modify_loss))
    assert result.summary["steps"] == 3 and len(losses) == 3 and all(map(np.isfinite, losses))
    assert [name for name in snapshots[1] if torch.equal(snapshots[1][name], snapshots[3][name])] == []

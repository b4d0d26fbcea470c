"""Write src/cliplab/models/timm_model_args.json: how timm 1.0.31 builds every image tower that
open_clip 3.3.0's built-in configs name (`vision_cfg.timm_model_name`), as data.

For each timm model name: the class that builds it, the keyword arguments timm's registered model
function passes to that class (after timm's own defaults from the pretrained config: `img_size`,
`num_classes`, `global_pool`, `in_chans`), and the pretrained config's preprocessing facts
(input size, mean, std, interpolation, crop). For each class: its constructor's defaults, so a
family reads every argument the class ends up with. Nothing is built: the class is replaced by a
recorder for the one call.

Run from the repository root with the test oracles installed (scripts/setup.sh puts open_clip and
timm in build/test-oracles; they import behind the torchvision stand-in of the test suite):

    python scripts/write_timm_model_args.py
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import importlib.metadata
import inspect
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "src" / "cliplab" / "models" / "timm_model_args.json"
PRETRAINED_CFG_KEYS = ("input_size", "fixed_input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode",
                       "num_classes", "pool_size")


def as_json(value):
    """A JSON form of a constructor argument: classes and functions by qualified name, partials
    with their arguments, dataclasses by their fields, module instances by class and repr, tuples
    as lists."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [as_json(item) for item in value]
    if isinstance(value, dict):
        return {str(key): as_json(item) for key, item in value.items()}
    if isinstance(value, functools.partial):
        return {"partial": as_json(value.func), "args": as_json(value.args), "keywords": as_json(value.keywords)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"dataclass": type(value).__name__,
                **{field.name: as_json(getattr(value, field.name)) for field in dataclasses.fields(value)}}
    if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        return f"{value.__module__}.{value.__qualname__}"
    if callable(value):  # a module instance: its class and structure
        return {"instance": f"{type(value).__module__}.{type(value).__qualname__}", "repr": repr(value)}
    raise TypeError(f"no JSON form for {value!r}")


class Recorded(Exception):
    """Raised by the stand-in class instead of building the model."""

    def __init__(self, kwargs: dict):
        super().__init__("recorded")
        self.kwargs = kwargs


def record_construction(timm, name: str) -> tuple[type, dict, dict]:
    """(model class, keyword arguments it would get, resolved pretrained config) for timm `name`."""
    builder_module = sys.modules["timm.models._builder"]
    real_builder = builder_module.build_model_with_cfg
    seen: dict = {}

    def recording_builder(model_cls, variant, pretrained, *args, **kwargs):
        def stand_in(**model_kwargs):
            raise Recorded(model_kwargs)
        seen["class"] = model_cls
        try:
            real_builder(stand_in, variant, pretrained, *args, **kwargs)
        except Recorded as recorded:
            seen["kwargs"] = recorded.kwargs
        raise Recorded(seen["kwargs"])

    patched = [module for module in list(sys.modules.values())
               if getattr(module, "__name__", "").startswith("timm.models")
               and getattr(module, "build_model_with_cfg", None) is real_builder]
    for module in patched:
        module.build_model_with_cfg = recording_builder
    try:
        timm.create_model(name)
    except Recorded:
        pass
    finally:
        for module in patched:
            module.build_model_with_cfg = real_builder
    pretrained_cfg = timm.models.get_pretrained_cfg(name).to_dict()
    return seen["class"], seen["kwargs"], pretrained_cfg


def constructor_defaults(model_class: type) -> dict:
    parameters = inspect.signature(model_class.__init__).parameters.values()
    return {parameter.name: as_json(parameter.default) for parameter in parameters
            if parameter.default is not inspect.Parameter.empty}


def timm_model_names(open_clip) -> dict[str, list[str]]:
    """timm model name -> the open_clip configs that name it."""
    names: dict[str, list[str]] = {}
    for model in open_clip.list_models():
        timm_name = open_clip.get_model_config(model).get("vision_cfg", {}).get("timm_model_name")
        if timm_name:
            names.setdefault(timm_name, []).append(model)
    return dict(sorted(names.items()))


def main() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    import reference_libraries

    open_clip, timm = reference_libraries.open_clip(), reference_libraries.timm()
    models, classes = {}, {}
    for name, configs in timm_model_names(open_clip).items():
        model_class, kwargs, pretrained_cfg = record_construction(timm, name)
        qualified = f"{model_class.__module__}.{model_class.__qualname__}"
        classes.setdefault(model_class.__name__, {"module": model_class.__module__,
                                                  "defaults": constructor_defaults(model_class)})
        models[name] = {"class": model_class.__name__, "qualified_class": qualified, "open_clip_configs": configs,
                        "kwargs": as_json(kwargs),
                        "pretrained_cfg": {key: as_json(pretrained_cfg[key]) for key in PRETRAINED_CFG_KEYS
                                           if pretrained_cfg.get(key) is not None}}
    document = {"timm_version": importlib.metadata.version("timm"),
                "open_clip_version": importlib.metadata.version("open_clip_torch"),
                "models": models, "classes": dict(sorted(classes.items()))}
    OUTPUT.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")
    print(f"wrote {len(models)} timm models of {len(classes)} classes to {OUTPUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

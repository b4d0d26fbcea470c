"""TrainConfig <-> plain data: strict loading from YAML/JSON, dotted overrides, and saving.

Loading is strict: an unknown key, a value of the wrong type, or a value a section rejects raises
`ConfigError` naming the dotted key (`optim.lr`) and the value. Types are checked from the dataclass
annotations (int, float, bool, str, Optional, Literal, dict, list/tuple); ints are accepted where a
float is expected, never bools where a number is.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Mapping

import yaml

from cliplab.config_checks import ConfigError, SectionError, is_int, require
from cliplab.data import DataConfig
from cliplab.train.checkpointing.atomic_files import write_text_atomic
from cliplab.train.config import TrainConfig


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


# A scalar field's type -> (whether a value is one, the requirement a ConfigError states).
_SCALARS = {
    bool: (lambda value: isinstance(value, bool), "must be true or false"),
    int: (is_int, "must be an integer"),
    str: (lambda value: isinstance(value, str), "must be a string"),
}


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check `value` against a field annotation; return it (ints widened to float where declared)."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as error:
                errors.append(error)
        raise ConfigError(key, value, f"must be {' or '.join(_type_name(o) for o in options)}")
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed:
            raise ConfigError(key, value, f"must be one of {allowed}")
        return value
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, Mapping):
            raise ConfigError(key, value, "must be a mapping (a config section)")
        return dataclass_from_dict(annotation, value, prefix=key)
    if origin in (list, tuple) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, value, "must be a list")
        args = typing.get_args(annotation)
        item_type = args[0] if args else Any
        items = [_coerce(item, item_type, f"{key}[{index}]") for index, item in enumerate(value)]
        return tuple(items) if (origin is tuple or annotation is tuple) else items
    if origin is dict or annotation is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(key, value, "must be a mapping")
        return dict(value)
    if annotation in _SCALARS:
        accepts, requirement = _SCALARS[annotation]
        require(accepts(value), key, value, requirement)
        return value
    if annotation is float:
        if isinstance(value, str):
            # YAML 1.1 reads `1e-3` (no dot) as a string; accept float literals where a float is due.
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(key, value, "must be a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, value, "must be a number")
        return float(value)
    if isinstance(annotation, type) and not isinstance(value, annotation):
        raise ConfigError(key, value, f"must be {_type_name(annotation)}")
    return value


def dataclass_from_dict(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping; unknown keys and bad values name the dotted key."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            dotted = f"{prefix}.{key}" if prefix else str(key)
            known = ", ".join(sorted(fields))
            raise ConfigError(dotted, data[key], f"is not a known key (known keys here: {known})")
    kwargs = {}
    for name, value in data.items():
        dotted = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(value, hints[name], dotted)
    try:
        return cls(**kwargs)
    except ConfigError as error:
        raise error.with_prefix(prefix) from None
    except (ValueError, TypeError) as error:
        # A check outside `cliplab.config_checks` (a model's architecture, say): its message whole.
        raise SectionError(prefix or cls.__name__, str(error)) from None


def config_from_dict(data: Mapping[str, Any]) -> TrainConfig:
    return dataclass_from_dict(TrainConfig, data)


def config_to_dict(config: Any) -> dict:
    """A JSON-ready dict of a (nested) config dataclass; tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def differences_from_defaults(config: Any, defaults: Any = None, prefix: str = "") -> dict[str, Any]:
    """`{"section.key": value}` (JSON-ready) for every setting of `config` (a TrainConfig, or a
    section of one) that differs from `defaults` (default: the type's defaults), in field order."""
    defaults = type(config)() if defaults is None else defaults
    changed: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value, default = getattr(config, field.name), getattr(defaults, field.name)
        key = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(value) and type(value) is type(default):
            changed.update(differences_from_defaults(value, default, prefix=f"{key}."))
        elif value != default:
            changed[key] = json.loads(json.dumps(value))
    return changed


def load_config_file(path: str | Path) -> dict:
    """Read a YAML or JSON config file into a dict (JSON is read by the YAML parser too)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config", str(path), "must be an existing YAML or JSON file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ConfigError("config", str(path), f"must be UTF-8 text (byte 0x{data[error.start]:02x} on line "
                          f"{line})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigError("config", str(path), f"must be valid {path.suffix.lstrip('.') or 'YAML'}: {error}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError("config", str(path), "must hold a mapping of sections at the top level")
    return data


def set_dotted(data: dict, dotted_key: str, value: Any) -> None:
    """data['a']['b'] = value for 'a.b', creating intermediate sections. Keys are checked on build."""
    parts = dotted_key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(dotted_key, value, f"cannot be set: '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """'loop.epochs=3' -> ('loop.epochs', 3); the value is parsed as YAML (so 'null', 'true', '[1, 2]').

    YAML 1.1 reads '1e-3' (no dot) as a string; it stays one here, so that a string key keeps it
    ('logging.name=1e3' names the run "1e3"), and a float key reads it as a number when the config
    is built (`_coerce`)."""
    if "=" not in text:
        raise ConfigError("set", text, "must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def resolve_config(config_path: str | Path | None = None,
                   overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Defaults <- config file <- dotted overrides, validated once at the end."""
    data: dict = load_config_file(config_path) if config_path else {}
    for dotted_key, value in (overrides or {}).items():
        set_dotted(data, dotted_key, value)
    return config_from_dict(data)


def read_data_section(path: str | Path) -> DataConfig:
    """The `data` section of a saved run config (a run's config.json), built alone: the other sections
    may need what the reading machine lacks (the wandb package of `logging.wandb`, say)."""
    data = load_config_file(path).get("data", {})
    if not isinstance(data, Mapping):
        raise ConfigError("data", data, f"must be a mapping (a config section) in {path}")
    return dataclass_from_dict(DataConfig, data, prefix="data")


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write `config` as JSON to `path`, replacing it atomically (a kill leaves the old file or the new)."""
    write_text_atomic(Path(path), json.dumps(config_to_dict(config), indent=2) + "\n")

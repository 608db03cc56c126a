"""Configs: frozen dataclasses, YAML files, and ``key=value`` overrides from the command line.

A recipe's config is a dataclass whose fields are *sections* (themselves dataclasses), for example
``model`` and ``train``. Keys may be written flat (``n_layer=4``), as nanoGPT users expect, when the name
belongs to exactly one section, or dotted (``model.n_layer=4``) always. Unknown keys and values of the wrong
type are rejected with a :class:`~genchain.errors.ConfigError` naming the key and the accepted values.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from genchain.errors import ConfigError

T = TypeVar("T")


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["a=1", "b.c=x"]`` -> ``{"a": 1, "b.c": "x"}``; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {pair!r} is not of the form key=value (example: n_layer=4)")
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key] = raw
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values")
    return data


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert ``value`` to ``annotation`` where it is unambiguous; raise ConfigError otherwise."""
    origin = typing.get_origin(annotation)
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
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(map(str, allowed))}; got {value!r}")
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key} must be true or false; got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be an integer; got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value)  # accepts "5000" and "5e3"
            except ValueError:
                number = None
            if number is not None and number.is_integer():
                return int(number)
        raise ConfigError(f"{key} must be an integer; got {value!r}")
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a number; got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key} must be a number; got {value!r}")
    if annotation is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key} must be a string; got {value!r}")
    raise ConfigError(f"{key}: unsupported field type {annotation!r}")


def build(cls: type[T], values: dict[str, Any], where: str = "") -> T:
    """Instantiate dataclass ``cls`` from ``values``, coercing types and rejecting unknown keys."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    prefix = f"{where}." if where else ""
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]}; known keys: {', '.join(prefix + k for k in sorted(fields))}"
        )
    kwargs = {}
    for name, value in values.items():
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            if not isinstance(value, dict):
                raise ConfigError(f"{prefix}{name} must be a mapping of keys to values")
            kwargs[name] = build(annotation, value, prefix + name)
        else:
            kwargs[name] = _coerce(value, annotation, prefix + name)
    try:
        return cls(**kwargs)
    except ValueError as err:
        raise ConfigError(f"invalid {where or cls.__name__} config: {err}") from err


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def nest_overrides(cls: type, overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Route flat or dotted keys to the section of recipe dataclass ``cls`` that owns them."""
    sections = {f.name: typing.get_type_hints(cls)[f.name] for f in dataclasses.fields(cls)}
    owners: dict[str, list[str]] = {}
    for section, section_cls in sections.items():
        for f in dataclasses.fields(section_cls):
            owners.setdefault(f.name, []).append(section)
    nested: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        if "." in key:
            section, _, name = key.partition(".")
            if section not in sections:
                raise ConfigError(f"unknown config section {section!r} in {key!r}; sections: {', '.join(sections)}")
        else:
            name = key
            candidates = owners.get(key, [])
            if not candidates:
                known = ", ".join(sorted(owners))
                raise ConfigError(f"unknown config key {key!r}; known keys: {known}")
            if len(candidates) > 1:
                raise ConfigError(f"key {key!r} is in several sections; write one of: "
                                  + ", ".join(f"{c}.{key}" for c in candidates))
            section = candidates[0]
        nested.setdefault(section, {})[name] = value
    return nested


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``extra`` into a copy of ``base``."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_recipe(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> T:
    """Build recipe ``cls`` from ``base`` values, then a YAML file, then ``key=value`` overrides, in that order."""
    values = dict(base or {})
    if path is not None:
        file_values = load_yaml(path)
        flat = {k: v for k, v in file_values.items() if not isinstance(v, dict)}
        nested = {k: v for k, v in file_values.items() if isinstance(v, dict)}
        values = merge(values, nested)
        values = merge(values, nest_overrides(cls, flat))
    if overrides:
        values = merge(values, nest_overrides(cls, parse_overrides(overrides)))
    return build(cls, values)


def load_variant_recipe(cls: type[T], path: str | Path | None, overrides: list[str] | None,
                        base: dict[str, Any] | None, *, model_name: Callable[[T], str],
                        variant_defaults: Callable[[str], dict[str, Any]],
                        defaults: dict[str, Any] | None = None) -> T:
    """A recipe whose ``model`` section starts from the values of the registered variant it names.

    Two passes, because the file or an override (``model=vae-tiny``) chooses the variant: the first finds its
    name (``model_name`` also checks it belongs to the family), the second loads again on top of the variant's
    values, so ``defaults`` < variant < ``base`` (a resumed run's config) < file < overrides.
    """
    base = merge(defaults or {}, base or {})
    name = model_name(load_recipe(cls, path, overrides, base=base))
    return load_recipe(cls, path, overrides, base=merge({"model": variant_defaults(name)}, base))


def dump_yaml(obj: Any) -> str:
    return yaml.safe_dump(to_dict(obj) if dataclasses.is_dataclass(obj) else obj, sort_keys=False)

"""Augmentation recipes: how strongly each modality is perturbed, as one dict with a section per modality.

A recipe is ``{"image": {...}, "text": {...}, "audio": {...}}``. Two presets ship (``light`` and ``strong``,
also written out as ``configs/augment/*.yaml`` for people to copy); a YAML file of the same form is a recipe
too. In a file, a key that is left out is *off* (the identity), unless the file names a preset to start from
with ``base: light`` -- so ``{base: light, image: {hflip: 0}}`` is the light recipe without flips.

Horizontal flips are in both presets because the default image data (Fashion-MNIST clothes, and most photos)
means the same mirrored. For digits, letters or any image with text in it a flip changes or destroys the
label: use ``configs/augment/digits.yaml`` (``hflip: 0``) or a recipe of your own.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from genchain.errors import InputError

# Every key with its "off" value; a recipe is this dict with some values changed.
OFF: dict[str, dict[str, Any]] = {
    "image": {
        "hflip": 0.0,             # probability of a left-right mirror
        "crop_scale": [1.0, 1.0],  # area fraction of a random crop resized back to full size (aspect 3/4..4/3)
        "rotate": 0.0,            # degrees, uniform in [-rotate, rotate]
        "translate": 0.0,         # fraction of width/height, uniform in [-translate, translate]
        "brightness": 0.0,        # factor in [1 - b, 1 + b]
        "contrast": 0.0,          # factor in [1 - c, 1 + c]
        "saturation": 0.0,        # factor in [1 - s, 1 + s]; RGB only
        "hue": 0.0,               # turns in [-h, h] (at most 0.5); RGB only
        "noise": 0.0,             # standard deviation of Gaussian noise on the [0, 1] pixel scale
        "erase": 0.0,             # probability of blanking a random rectangle (2-20% of the area)
    },
    "text": {
        "swap": 0.0,    # fraction of words to swap pairwise (at least one swap when > 0)
        "delete": 0.0,  # probability that each word is deleted (one word always survives)
        "insert": 0.0,  # fraction of words to insert again at random positions (at least one when > 0)
    },
    "audio": {
        "gain_db": [0.0, 0.0],  # gain in decibels, uniform in the range
        "shift": 0.0,           # circular time shift, fraction of the clip, uniform in [-shift, shift]
        "snr_db": None,         # additive Gaussian noise at a signal-to-noise ratio in this range; null = none
        "speed": [1.0, 1.0],    # playback speed factor (resampling: duration and pitch both change)
    },
}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "light": {
        "image": {"hflip": 0.5, "crop_scale": [0.85, 1.0], "brightness": 0.1, "contrast": 0.1},
        "text": {"swap": 0.1, "delete": 0.1, "insert": 0.0},
        "audio": {"gain_db": [-3.0, 3.0], "shift": 0.05, "snr_db": [30.0, 50.0], "speed": [0.95, 1.05]},
    },
    "strong": {
        "image": {"hflip": 0.5, "crop_scale": [0.6, 1.0], "rotate": 15.0, "translate": 0.1, "brightness": 0.3,
                  "contrast": 0.3, "saturation": 0.3, "hue": 0.05, "noise": 0.03, "erase": 0.5},
        "text": {"swap": 0.2, "delete": 0.2, "insert": 0.1},
        "audio": {"gain_db": [-9.0, 6.0], "shift": 0.2, "snr_db": [15.0, 30.0], "speed": [0.85, 1.15]},
    },
}

_RANGES = {"crop_scale", "gain_db", "snr_db", "speed"}
_PROBABILITIES = {"hflip", "erase", "swap", "delete", "insert"}


def load_recipe(recipe: str | Path | dict[str, Any]) -> tuple[str, dict[str, dict[str, Any]]]:
    """``(name, resolved recipe)`` from a preset name, a YAML file, or a dict of the YAML's form.

    Raises:
        InputError: an unknown preset, a missing or unreadable file, an unknown key or a bad value.
    """
    if isinstance(recipe, dict):
        return "custom", _resolve(recipe, "the recipe")
    if str(recipe) in PRESETS:
        return str(recipe), _resolve({"base": str(recipe)}, str(recipe))
    path = Path(recipe)
    if path.suffix not in (".yaml", ".yml"):
        raise InputError(f"unknown recipe {str(recipe)!r}; use {', '.join(PRESETS)} or a .yaml file")
    try:
        body = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise InputError(f"cannot read recipe {path} ({err.strerror})") from err
    except yaml.YAMLError as err:
        raise InputError(f"recipe {path} is not valid YAML ({err})") from err
    if not isinstance(body, dict):
        raise InputError(f"recipe {path} must be a mapping with image/text/audio sections")
    return str(path), _resolve(body, str(path))


def _resolve(body: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """Start from ``OFF`` (or the named base preset), overlay ``body``, and check every key and value."""
    body = dict(body)
    base = body.pop("base", None)
    resolved = copy.deepcopy(OFF)
    if base is not None:
        if base not in PRESETS:
            raise InputError(f"{where}: unknown base {base!r}; use one of {', '.join(PRESETS)}")
        _overlay(resolved, PRESETS[base], where)
    _overlay(resolved, body, where)
    return resolved


def _overlay(resolved: dict[str, dict[str, Any]], body: dict[str, Any], where: str) -> None:
    for section, settings in body.items():
        if section not in OFF:
            raise InputError(f"{where}: unknown section {section!r}; known: base, {', '.join(OFF)}")
        if not isinstance(settings, dict):
            raise InputError(f"{where}: {section} must be a mapping of settings, got {settings!r}")
        for key, val in settings.items():
            if key not in OFF[section]:
                raise InputError(f"{where}: unknown {section} setting {key!r}; known: {', '.join(OFF[section])}")
            resolved[section][key] = _check(f"{section}.{key}", val, where)


def _check(key: str, val: Any, where: str) -> Any:
    """The value as floats (a ``[lo, hi]`` list for ranges), or an InputError saying what is allowed."""
    name = key.split(".")[1]
    if name in _RANGES:
        if val is None and name == "snr_db":
            return None
        if not (isinstance(val, list | tuple) and len(val) == 2 and all(_is_number(v) for v in val)
                and val[0] <= val[1]):
            raise InputError(f"{where}: {key} must be a [low, high] pair of numbers, got {val!r}")
        low, high = float(val[0]), float(val[1])
        if (name == "crop_scale" and not 0 < low <= high <= 1) or (name == "speed" and low <= 0):
            raise InputError(f"{where}: {key} {val!r} is out of range "
                             f"({'0 < low <= high <= 1' if name == 'crop_scale' else 'speeds must be > 0'})")
        return [low, high]
    if not _is_number(val) or val < 0:
        raise InputError(f"{where}: {key} must be a number >= 0, got {val!r}")
    if (name in _PROBABILITIES or name in ("translate", "brightness", "contrast", "saturation", "shift")) \
            and val > 1:
        raise InputError(f"{where}: {key} must be between 0 and 1, got {val!r}")
    if name == "hue" and val > 0.5:
        raise InputError(f"{where}: {key} is in turns and must be at most 0.5, got {val!r}")
    return float(val)


def _is_number(val: Any) -> bool:
    return isinstance(val, int | float) and not isinstance(val, bool)

"""Model registry: ``@register_model`` on small builder functions, ``create_model(name)`` to build one.

Modelled on timm's ``_registry.py``: every family adds its variants here (each family registers a ``tiny``
one that the tests iterate over), and unknown names raise with the list of known ones instead of falling
through an ``if/elif`` chain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from genchain.errors import ConfigError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    builder: Callable[..., nn.Module]
    doc: str


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, family: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``builder`` under ``name``; ``family`` groups models that share a trainer and generator."""

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        doc = (builder.__doc__ or "").strip().splitlines()[0] if builder.__doc__ else ""
        _REGISTRY[name] = ModelEntry(name, family, builder, doc)
        return builder

    return decorator


def list_models(family: str | None = None) -> list[ModelEntry]:
    """Registered models, optionally of one family, sorted by name."""
    _import_families()
    return sorted((e for e in _REGISTRY.values() if family is None or e.family == family), key=lambda e: e.name)


def get_entry(name: str) -> ModelEntry:
    _import_families()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise ConfigError(f"unknown model {name!r}; known models: {known}")
    return _REGISTRY[name]


def get_family_entry(name: str, family: str, command: str) -> ModelEntry:
    """The entry of ``name``, which must be a ``family`` model; the error lists the family's registered names."""
    entry = get_entry(name)
    if entry.family != family:
        known = ", ".join(e.name for e in list_models(family))
        raise ConfigError(f"model {name!r} is a {entry.family!r} model; `{command}` takes one of: {known}")
    return entry


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the model registered as ``name`` with config fields ``kwargs``."""
    entry = get_entry(name)
    try:
        return entry.builder(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"cannot build model {name!r}: {err}") from err


def _import_families() -> None:
    """Import the modules that register models, so the registry is complete whatever was imported first."""
    import genchain.models.gan  # noqa: F401
    import genchain.models.gpt  # noqa: F401
    import genchain.models.music  # noqa: F401
    import genchain.models.speech  # noqa: F401
    import genchain.models.text_vae  # noqa: F401
    import genchain.models.vae  # noqa: F401
    import genchain.models.video  # noqa: F401

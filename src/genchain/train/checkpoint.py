"""Checkpoints: weights as safetensors (fp32), training state as a torch pickle, both written atomically.

``last.safetensors`` and ``state.pt`` are written as a pair; each records the iteration it belongs to, and
:func:`load_training_state` refuses a pair whose iterations differ (a crash between the two writes), so a
resume never mixes weights and optimizer moments from different steps.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from genchain.errors import CheckpointError
from genchain.fileio import atomic_path


def save_weights(path: str | Path, tensors: Iterable[tuple[str, torch.Tensor]], metadata: dict[str, str]) -> None:
    """Write named tensors as fp32 safetensors (tied weights appear once, under their first name)."""
    state = {name: t.detach().to("cpu", torch.float32).contiguous() for name, t in tensors}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def model_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """A module's unique parameters and persistent buffers, by name."""
    names = {name for name, _ in model.named_buffers()} - set(_non_persistent(model))
    return list(model.named_parameters()) + [(n, b) for n, b in model.named_buffers() if n in names]


def _non_persistent(model: nn.Module) -> list[str]:
    out = []
    for prefix, module in model.named_modules():
        for name in getattr(module, "_non_persistent_buffers_set", ()):
            out.append(f"{prefix}.{name}" if prefix else name)
    return out


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors (fp32, CPU) and metadata of a safetensors checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as fh:
            return {name: fh.get_tensor(name) for name in fh.keys()}, fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a safetensors file ({err})") from err


def apply_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Copy ``state`` into ``model`` (any dtype/device), refusing a checkpoint of another shape or family."""
    expected = dict(model_tensors(model))
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {source} does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]}); "
            "it was saved from a model of another shape or family"
        )
    with torch.no_grad():
        for name, tensor in expected.items():
            if tensor.shape != state[name].shape:
                raise CheckpointError(
                    f"checkpoint {source}: {name} has shape {tuple(state[name].shape)}, the model expects "
                    f"{tuple(tensor.shape)}; the config does not match the checkpoint"
                )
            tensor.copy_(state[name])


def load_weights(model: nn.Module, path: str | Path) -> dict[str, str]:
    """Load a safetensors checkpoint into ``model``; return the file's metadata."""
    state, metadata = read_weights(path)
    apply_weights(model, state, path)
    return metadata


def save_training_state(path: str | Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_training_state(path: str | Path, weights_metadata: dict[str, str]) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for a damaged pickle
        raise CheckpointError(f"training state {path} is corrupt ({type(err).__name__}: {err})") from err
    if str(state.get("iter")) != weights_metadata.get("iter"):
        raise CheckpointError(
            f"{path} (iteration {state.get('iter')}) does not match the last weights (iteration "
            f"{weights_metadata.get('iter')}); the run was interrupted while saving; start a new run"
        )
    return state

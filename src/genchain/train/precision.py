"""Mixed-precision training: the forward/backward context and how gradients reach the optimizer.

Three schemes, chosen by :func:`genchain.runtime.select_precision`:

* ``fp32`` -- nothing special.
* ``bf16-mixed`` / ``fp16-mixed`` -- ``torch.autocast`` over fp32 weights (fp16 adds a ``GradScaler``).
* ``bf16`` -- the model itself holds bf16 weights, so no activation is ever cast, and :class:`MasterWeights`
  keeps fp32 copies that the optimizer updates (Micikevicius et al. 2018, "Mixed Precision Training"). The
  fp32 copies are what checkpoints store, so nothing is lost by training this way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn as nn

from genchain.runtime import PrecisionName


class MasterWeights:
    """fp32 master copies of a bf16 model's parameters; the optimizer is built over :attr:`params`."""

    def __init__(self, model: nn.Module):
        self.names = [name for name, _ in model.named_parameters()]
        self.params = [p.detach().float().clone().requires_grad_(p.requires_grad) for p in model.parameters()]
        model.to(torch.bfloat16)
        self.model_params = list(model.parameters())

    def grads_to_master(self) -> None:
        for master, param in zip(self.params, self.model_params, strict=True):
            master.grad = None if param.grad is None else param.grad.float()
            param.grad = None

    @torch.no_grad()
    def master_to_model(self) -> None:
        torch._foreach_copy_(self.model_params, self.params)

    def named_fp32(self) -> Iterator[tuple[str, torch.Tensor]]:
        return zip(self.names, self.params, strict=True)


class Precision:
    """Everything the engine does differently per precision, behind one small interface."""

    def __init__(self, name: PrecisionName, device: torch.device):
        self.name = name
        self.device = device
        self.master: MasterWeights | None = None
        self.scaler = torch.amp.GradScaler(device.type) if name == "fp16-mixed" else None

    @property
    def activation_dtype(self) -> torch.dtype:
        return {"fp32": torch.float32, "bf16": torch.bfloat16, "bf16-mixed": torch.bfloat16,
                "fp16-mixed": torch.float16}[self.name]

    def prepare(self, model: nn.Module) -> list[nn.Parameter] | list[torch.Tensor]:
        """Move ``model`` to its training dtype; return the tensors the optimizer must own."""
        model.to(self.device)
        if self.name == "bf16":
            self.master = MasterWeights(model)
            return self.master.params
        return [p for p in model.parameters()]

    def autocast(self) -> AbstractContextManager:
        if self.name in ("bf16-mixed", "fp16-mixed"):
            return torch.autocast(self.device.type, dtype=self.activation_dtype)
        return nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale_and_clip(self, optimizer: torch.optim.Optimizer, params: list, max_norm: float) -> float:
        """Bring gradients to the optimizer's params in true scale; clip them if ``max_norm`` > 0."""
        if self.master is not None:
            self.master.grads_to_master()
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        if max_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
            return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)  # FSDP: a sharded norm
        return 0.0

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if self.master is not None:
            self.master.master_to_model()

    def state_dict(self) -> dict:
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])

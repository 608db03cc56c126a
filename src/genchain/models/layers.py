"""Building blocks shared by the model families, written for CPU speed where PyTorch's defaults are slow."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn import functional as F


class _ByteMaskDropout(torch.autograd.Function):
    """Dropout whose keep-mask comes from random *bytes*, four per 32-bit draw, turned into 0/1 arithmetically.

    ``F.dropout`` on CPU draws one Bernoulli sample per element from the Mersenne Twister and is the
    slowest op of a small Transformer's step (about 60 ms per 6M bf16 activations here). Drawing bytes is
    six times cheaper, and so is building the mask with ``to``/``sub_``/``clamp_`` in the activation dtype
    rather than with a boolean comparison, whose conversions cost more than the matmuls around them. The
    price is that ``p`` is rounded to a multiple of 1/256 (0.2 becomes 51/256 = 0.199); the scale uses the
    rounded value, so the expectation is preserved. Draws come from torch's global generator, so seeding
    and checkpointed RNG state cover them.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, threshold: int, scale: float) -> torch.Tensor:  # type: ignore[override]
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int32, device=x.device).random_(-(2**31), 2**31)
        byte = words.view(torch.uint8)[:n].view(x.shape)
        keep = byte.to(x.dtype).sub_(threshold - 1).clamp_(0, 1)  # 1 where byte >= threshold, else 0 (exact)
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return (x * keep).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (keep,) = ctx.saved_tensors
        return (grad * keep).mul_(ctx.scale), None, None


class Dropout(nn.Module):
    """``nn.Dropout`` with the fast byte-mask kernel on CPU; CUDA and MPS keep PyTorch's fused one."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.threshold = round(p * 256)
        self.scale = 256.0 / (256 - self.threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type == "cpu":
            return _ByteMaskDropout.apply(x, self.threshold, self.scale)
        return F.dropout(x, self.p, training=True)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def causal_attention_math(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Causal softmax attention as two batched matmuls, for (B, nh, T, hs) inputs; ``mask`` is (T, T).

    On CPU, for the short sequences small models train on (T <= 512), this is about twice as fast as
    ``scaled_dot_product_attention``'s flash kernel forward + backward in bf16, because both matmuls run
    on the bf16 GEMM units while the flash kernel's tiling does not. Memory grows with T^2, so callers
    use it only for short sequences.
    """
    B, nh, T, hs = q.shape
    scores = torch.baddbmm(
        mask[:T, :T].to(q.dtype).expand(B * nh, T, T),
        q.reshape(B * nh, T, hs),
        k.reshape(B * nh, T, hs).transpose(1, 2),
        alpha=hs**-0.5,
    )  # (B*nh, T, T)
    return torch.bmm(scores.softmax(dim=-1), v.reshape(B * nh, T, hs)).view(B, nh, T, hs)


class PackedLinear(nn.Module):
    """An inference-only ``nn.Linear`` whose bf16 weight is pre-arranged into oneDNN's blocked layout.

    A decoding step is a chain of matrix-vector products; ``F.linear`` re-arranges the weight on every call,
    while a packed weight goes straight to the GEMM kernel, which halves a bf16 384x1536 product at batch 1
    on AVX512-BF16 CPUs. Outputs are bit-identical to ``F.linear`` (tested). This is the op PyTorch's own
    compiler emits for frozen CPU linears; :func:`pack_linears_for_cpu` uses it only where it exists.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        with torch.no_grad():
            self.register_buffer("packed_weight", torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), 1))
            self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, packed=True"


def can_pack_linears(device: torch.device, dtype: torch.dtype) -> bool:
    return (device.type == "cpu" and dtype == torch.bfloat16 and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight") and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def pack_linears_for_cpu(model: nn.Module) -> nn.Module:
    """Replace every ``nn.Linear`` of a bf16 CPU model by a :class:`PackedLinear`, in place, for inference only."""
    for name, child in model.named_children():
        if isinstance(child, nn.Linear):
            setattr(model, name, PackedLinear(child))
        else:
            pack_linears_for_cpu(child)
    return model

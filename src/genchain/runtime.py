"""Where and in what precision work runs: device choice, mixed precision, seeding, environment record.

One function per decision so every link (training, generation, evaluation, serving) makes it the same way:

* :func:`select_device` -- CUDA, then Apple MPS, then CPU, unless the user names one.
* :func:`select_precision` -- on CPUs with native bf16 (AVX512-BF16 or AMX), bf16 compute with fp32 master
  weights; on CUDA, bf16 autocast where the GPU supports it, else fp16 autocast with a gradient scaler;
  fp32 everywhere else.
* :func:`seed_everything` -- Python, NumPy and torch generators from one seed.
"""

from __future__ import annotations

import os
import platform
import random
from functools import lru_cache
from typing import Literal

import numpy as np
import torch

from genchain.errors import ConfigError

PrecisionName = Literal["fp32", "bf16", "bf16-mixed", "fp16-mixed"]


def select_device(preference: str = "auto") -> torch.device:
    """Resolve ``auto`` (CUDA > MPS > CPU) or check that the named device exists.

    Under torchrun each process takes the GPU of its ``LOCAL_RANK`` (``cuda`` means ``cuda:LOCAL_RANK``).
    """
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ["LOCAL_RANK"])) if "LOCAL_RANK" in os.environ else \
                torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(preference)
    except RuntimeError as err:
        raise ConfigError(f"unknown device {preference!r}; use auto, cpu, cuda, cuda:N or mps") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda was asked for but no CUDA GPU is visible; use device=auto or device=cpu")
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device=mps was asked for but MPS is not available; use device=auto or device=cpu")
    return device


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU multiplies bf16 natively (AVX512-BF16 or AMX), so bf16 beats fp32 several-fold."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = fh.read()
    except OSError:
        flags = ""
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        return True
    return platform.machine() == "arm64" and platform.system() == "Darwin"


def select_precision(device: torch.device, preference: str = "auto") -> PrecisionName:
    """Resolve ``auto`` to the fastest precision that trains as well as fp32 on ``device``.

    ``bf16`` keeps the model's weights and activations in bf16 and lets the optimizer update fp32 master
    copies (:class:`genchain.train.precision.MasterWeights`). On CPU this beats autocast, which spends a
    third of a small model's step casting activations back and forth. On CUDA the casts are cheap and
    autocast (``bf16-mixed``) is the standard choice.
    """
    choices = ("auto", "fp32", "bf16", "bf16-mixed", "fp16-mixed")
    if preference not in choices:
        raise ConfigError(f"dtype must be one of {', '.join(choices)}; got {preference!r}")
    if preference != "auto":
        if preference == "fp16-mixed" and device.type != "cuda":
            raise ConfigError("dtype=fp16-mixed needs a CUDA device; on CPU use bf16 or fp32")
        return preference  # type: ignore[return-value]
    if device.type == "cuda":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "fp16-mixed"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def environment() -> dict[str, str]:
    """Versions and hardware, recorded in every run dir so a number can be traced to what produced it."""
    import genchain

    info = {
        "genchain": genchain.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu_threads": str(torch.get_num_threads()),
        "cpu_native_bf16": str(cpu_has_native_bf16()),
    }
    if torch.cuda.is_available():
        info["cuda"] = str(torch.version.cuda)
        info["gpu"] = torch.cuda.get_device_name()
    from importlib import metadata

    for name in ("tokenizers", "safetensors", "transformers"):
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return info

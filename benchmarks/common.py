"""Shared helpers for the benchmarks: the peer's checkout, timing, the bf16 peak, and the results files.

Every benchmark measures genchain and a named peer in the same run on the same machine, prints ratios of
medians, and writes ``results/<name>.json`` with the exact commands. Timings on shared machines are noisy:
read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / "work"
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
GENCHAIN = [sys.executable, "-m", "genchain"]


def nanogpt_dir() -> Path:
    """A checkout of github.com/karpathy/nanoGPT, named by $NANOGPT_DIR (never vendored here)."""
    path = Path(os.environ.get("NANOGPT_DIR", "/tmp/nanogpt"))
    if not (path / "train.py").is_file():
        sys.exit(f"nanoGPT not found at {path}: clone karpathy/nanoGPT and set NANOGPT_DIR")
    return path


def require_shakespeare() -> Path:
    if not SHAKESPEARE.is_file():
        sys.exit(f"{SHAKESPEARE} is absent: the benchmarks need the reference data")
    return SHAKESPEARE


def prepare_data() -> Path:
    """tinyshakespeare as our dataset, plus the same tokens in the layout nanoGPT's train.py reads."""
    data = WORK / "shakespeare_char"
    if not (data / "manifest.json").is_file():
        subprocess.run(GENCHAIN + ["data", "prepare", "text", str(require_shakespeare()), "-o", str(data),
                                   "--overwrite"], check=True)
    nano_cwd = WORK / "nanogpt_cwd"
    nano_data = nano_cwd / "data" / "shakespeare_char"
    nano_data.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        target = nano_data / f"{split}.bin"
        if not target.exists():
            target.write_bytes((data / f"{split}.bin").read_bytes())
    chars = json.loads((data / "tokenizer.json").read_text())["chars"]
    with open(nano_data / "meta.pkl", "wb") as fh:
        pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)),
                     "stoi": {c: i for i, c in enumerate(chars)}}, fh)
    configurator = nano_cwd / "configurator.py"  # train.py exec()s it from the working directory
    if not configurator.exists():
        configurator.symlink_to(nanogpt_dir() / "configurator.py")
    return data


def bf16_matmul_peak_tflops(n: int = 2048, reps: int = 10) -> float:
    """The best bf16 GEMM rate of this machine right now, the denominator of our MFU figures."""
    a = torch.randn(n, n, dtype=torch.bfloat16)
    b = torch.randn(n, n, dtype=torch.bfloat16)
    best = 0.0
    for _ in range(3):
        a @ b
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e12)
    return best


def median(values: list[float]) -> float:
    return statistics.median(values)


def environment() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor() or
            platform.machine(), "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def write_results(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "environment": environment(), **payload}, indent=2) + "\n")
    commands = payload.get("commands") or {"genchain": payload.get("command")}
    for who, command in commands.items():
        if command:
            print(f"command ({who}): {command}")
    print(f"wrote {path.relative_to(ROOT)}")
    return path


def stream_lines(cmd: list[str], cwd: Path | None = None) -> list[tuple[float, str]]:
    """Run ``cmd`` and return each output line with its time since the process started."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append((time.perf_counter() - start, line.rstrip("\n")))
    if proc.wait() != 0:
        tail = "\n".join(line for _, line in lines[-20:])
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{tail}")
    return lines


def examples_source(relative: str) -> tuple[str, str]:
    """The text of a pytorch/examples file (e.g. ``dcgan/main.py``) and where it came from, read at run time from
    ``$PYTORCH_EXAMPLES_DIR``: a checkout or a bare git mirror. Its code is never copied into this project."""
    path = Path(os.environ.get("PYTORCH_EXAMPLES_DIR", "/tmp/pytorch-examples"))
    if (path / relative).is_file():
        rev = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
        return (path / relative).read_text(), f"{path / relative} @ {rev.strip() or 'unknown commit'}"
    if (path / "HEAD").is_file() and (path / "objects").is_dir():  # a bare repository
        git = ["git", "--git-dir", str(path)]
        rev = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        text = subprocess.run(git + ["show", f"{rev}:{relative}"], capture_output=True, text=True, check=True).stdout
        return text, f"{path} (bare) {rev}:{relative}"
    sys.exit(f"pytorch/examples not found at {path}: clone github.com/pytorch/examples and set PYTORCH_EXAMPLES_DIR")

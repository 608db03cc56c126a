"""Claim 1: training tokens/s on nanoGPT's train_shakespeare_char model and batch, on CPU, against nanoGPT.

Both train the same model (6 layers, 6 heads, 384 wide, block 256, batch 64, dropout 0.2) on the same
tokens. nanoGPT runs as its README says for CPU (device=cpu, compile=False: fp32, as its train.py picks on
CPU); genchain runs with its defaults (bf16 weights with fp32 masters on a CPU with native bf16). The first
iterations of each run warm up the allocator and are not counted.

    python benchmarks/bench_train_throughput.py [--runs 3] [--iters 7] [--skip 2]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys

from common import (
    GENCHAIN,
    ROOT,
    WORK,
    bf16_matmul_peak_tflops,
    median,
    nanogpt_dir,
    prepare_data,
    stream_lines,
    write_results,
)
from genchain.models.gpt import GPT, GPTConfig

TOKENS_PER_ITER = 64 * 256
# 6 * non-embedding params + attention, per token (nanoGPT's estimate_mfu formula), for the MFU column.
FLOPS_PER_TOKEN = GPT(GPTConfig(vocab_size=65, n_layer=6, n_head=6, n_embd=384, block_size=256)).flops_per_token(256)


def nanogpt_run(iters: int) -> tuple[list[float], list[str]]:
    nano = nanogpt_dir()
    cmd = [sys.executable, str(nano / "train.py"), str(nano / "config" / "train_shakespeare_char.py"),
           "--device=cpu", "--compile=False", f"--max_iters={iters}", "--eval_interval=100000", "--eval_iters=1",
           "--log_interval=1", "--always_save_checkpoint=False", f"--out_dir={WORK / 'nanogpt_out'}"]
    lines = stream_lines(cmd, cwd=WORK / "nanogpt_cwd")
    times = [float(m.group(1)) / 1000 for _, line in lines if (m := re.search(r"^iter \d+: .*time ([\d.]+)ms", line))]
    return [TOKENS_PER_ITER / t for t in times], cmd


def genchain_run(iters: int, data) -> tuple[list[float], list[str]]:
    out = WORK / "throughput_run"
    shutil.rmtree(out, ignore_errors=True)
    cmd = GENCHAIN + ["train", "gpt", "--data", str(data), "--out", str(out), "--config",
                      str(ROOT / "configs" / "shakespeare_char.yaml"), f"max_iters={iters}", "eval_interval=100000",
                      "eval_iters=1", "log_interval=1", "tensorboard=false"]
    stream_lines(cmd)
    points = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [p["items_per_s"] for p in points if p["kind"] == "train"], cmd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--iters", type=int, default=7)
    parser.add_argument("--skip", type=int, default=2, help="warm-up iterations not counted")
    args = parser.parse_args()
    data = prepare_data()
    ours, theirs, peaks = [], [], []
    for run in range(args.runs):  # interleaved, so drift in machine load hits both alike
        peaks.append(bf16_matmul_peak_tflops())
        rates, nano_cmd = nanogpt_run(args.iters)
        theirs.append(median(rates[args.skip:]))
        rates, our_cmd = genchain_run(args.iters, data)
        ours.append(median(rates[args.skip:]))
        print(f"run {run + 1}: nanoGPT {theirs[-1]:,.0f} tok/s, genchain {ours[-1]:,.0f} tok/s, "
              f"bf16 peak {peaks[-1]:.2f} TFLOP/s")
    peak = max(peaks)  # the machine's best bf16 GEMM rate seen in this run; slower readings are interference
    ratio = median(ours) / median(theirs)
    mfu = {name: median(v) * FLOPS_PER_TOKEN / (peak * 1e12) for name, v in (("genchain", ours), ("nanoGPT", theirs))}
    print(f"median tokens/s: genchain {median(ours):,.0f}, nanoGPT {median(theirs):,.0f}; ratio {ratio:.2f}x "
          f"(target >= 4x); MFU vs measured bf16 peak {peak:.2f} TFLOP/s: genchain {mfu['genchain']:.1%}, "
          f"nanoGPT {mfu['nanoGPT']:.1%}")
    write_results("train_throughput", {
        "claim": "training tokens/s on nanoGPT's shakespeare_char model, CPU, >= 4x nanoGPT",
        "peer": "nanoGPT train.py (karpathy/nanoGPT), device=cpu compile=False (fp32)",
        "genchain_tokens_per_s": ours, "nanogpt_tokens_per_s": theirs, "ratio_of_medians": ratio,
        "bf16_peak_tflops": peaks, "mfu": mfu, "target_ratio": 4.0, "met": ratio >= 4.0,
        "commands": {"nanogpt": " ".join(nano_cmd), "genchain": " ".join(our_cmd)},
        "runs": args.runs, "iters_per_run": args.iters, "warmup_iters_skipped": args.skip,
    })


if __name__ == "__main__":
    main()

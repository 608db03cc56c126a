"""Scaling out on this machine's 2 cores: GPT training with 1 vs 2 torchrun processes, and data cleaning with the
local vs the Dask executor; plus the 8/64-GPU time-to-loss projection that docs/distributed.md explains.

Training: the same global batch (``--batch`` sequences of ``--block`` tokens) per iteration in three set-ups,
interleaved run by run so drift in machine load hits all alike, median of ``--runs``:

* ``1p1t``: 1 process, 1 thread (OMP_NUM_THREADS=1): the throughput of one worker (baseline);
* ``1p2t``: 1 process, 2 threads: what one process gets from both cores through intra-op threading;
* ``2p1t``: 2 processes x 1 thread under torchrun (DDP over gloo), each with half the global batch.

Scaling efficiency (strong scaling, fixed global batch) = tok/s(2p1t) / (2 x tok/s(1p1t)): 1.0 would mean the
second worker doubled throughput with no cost for communication or for sharing the memory bus. We also report
tok/s(2p1t) / tok/s(1p2t): data parallelism against intra-op threads on the same two cores.

Data: ``genchain data clean --dedup exact,near --redact-pii --min-chars 10`` on a synthetic corpus, executor
local vs dask with 2 workers (median of ``--runs``; Dask's start-up is included, as a user pays it). The
outputs are checked to be identical.

No GPU is lent to this task: every figure here is CPU; the GPU numbers in the projection are nanoGPT's
published A100 figures and stated bandwidth assumptions.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import GENCHAIN, ROOT, WORK, median, write_results  # noqa: E402

TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


def gpt_data() -> Path:
    from genchain.data.tokens import prepare_text

    data = WORK / "scaling_char"
    shakespeare = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
    if not (data / "manifest.json").is_file():
        if shakespeare.is_file():
            source = shakespeare
        else:  # the reference text is absent: a generated corpus does for a throughput figure
            sys.path.insert(0, str(ROOT / "tests"))
            from conftest import make_corpus

            source = WORK / "scaling_corpus.txt"
            source.write_text(make_corpus(20000), encoding="utf-8")
        prepare_text([str(source)], data, tokenizer="char", overwrite=True)
    return data


def train_run(setup: str, data: Path, args: argparse.Namespace) -> tuple[float, list[str]]:
    """Median tokens/s over the iterations after the warm-up, as rank 0 logged them (both ranks together)."""
    out = WORK / f"scaling_{setup}"
    shutil.rmtree(out, ignore_errors=True)
    procs = 2 if setup == "2p1t" else 1
    threads = "2" if setup == "1p2t" else "1"
    overrides = [f"n_layer={args.layers}", f"n_head={args.heads}", f"n_embd={args.embd}", f"block_size={args.block}",
                 f"batch_size={args.batch // procs}", f"max_iters={args.iters}", "eval_interval=100000",
                 "eval_iters=1", "log_interval=1", "tensorboard=false", "warmup_iters=0"]
    launcher = [TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "genchain"] if procs == 2 else GENCHAIN
    cmd = launcher + ["train", "gpt", "--data", str(data), "--out", str(out), *overrides]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": threads})
    points = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [p["items_per_s"] for p in points if p["kind"] == "train"][args.skip:]
    return median(rates), cmd


def text_dataset(n: int) -> Path:
    from genchain.data.dataset import DatasetWriter, base_features

    path = WORK / f"scaling_texts_{n}"
    if (path / "manifest.json").is_file():
        return path
    rng = random.Random(0)
    words = ("harbour quiet dawn fishing boats rocked gently against old stone pier gulls circled above market "
             "opened bread smelled warm children ran along sea wall sails white wind rose river bridge").split()
    docs = [" ".join(rng.choice(words) for _ in range(rng.randint(30, 80))) for _ in range(n)]
    for i in range(0, n, 7):
        docs[i] += f" call +1 415 555 {1000 + i % 9000} or mail someone{i}@example.org"
    for i in range(0, n, 11):
        docs[(i + 101) % n] = docs[i].upper()
    with DatasetWriter(path, "text", base_features("text"), overwrite=True) as writer:
        for i, text in enumerate(docs):
            writer.add({"id": str(i), "source": "synthetic", "text": text})
        writer.close({"sources": [{"path": "synthetic", "licence": "CC0-1.0"}]})
    return path


def clean_run(executor: str, data: Path, workers: int) -> tuple[float, list[str], Path]:
    out = WORK / f"scaling_clean_{executor}"
    cmd = GENCHAIN + ["data", "clean", str(data), "-o", str(out), "--dedup", "exact,near", "--redact-pii",
                      "--min-chars", "10", "--executor", executor, "--workers", str(workers), "--overwrite"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start, cmd, out


def projection(params: int) -> dict:
    """Time-to-loss of GPT-2 124M (nanoGPT's OpenWebText run) on 8 and 64 A100s: compute from nanoGPT's published
    throughput, communication from the ring all-reduce volume of the gradients, overlapped with backward."""
    tokens_to_loss = 600_000 * 491_520  # nanoGPT train_gpt2.py: 600k iters x 12 x 1024 x 40 tokens -> loss ~2.85
    per_gpu = tokens_to_loss / (4 * 86_400) / 8  # "~4 days on one 8XA100 40GB node" -> tokens/s per A100
    grad_bytes = 4 * 124_000_000  # DDP all-reduces fp32 gradients under bf16 autocast
    step_tokens = 491_520  # the global batch stays nanoGPT's, so the loss per token is unchanged
    out = {"assumptions": {
        "tokens_to_loss_2.85": tokens_to_loss, "a100_tokens_per_s": per_gpu, "grad_bytes": grad_bytes,
        "global_batch_tokens": step_tokens, "nvlink_GBps_per_gpu": 300, "infiniband_Gbps_per_gpu": [100, 400],
        "backward_share_of_step": 2 / 3,
        "note": "ring all-reduce moves 2(N-1)/N x gradient bytes per GPU per step; DDP overlaps it with backward "
                "(2/3 of the compute), so only what exceeds the backward is exposed; comm runs once per step "
                "(no_sync on accumulation micro-steps)"}}
    for n, links in ((8, {"nvlink": 300e9}), (64, {"ib_100Gbps": 100e9 / 8, "ib_400Gbps": 400e9 / 8})):
        compute = step_tokens / (n * per_gpu)
        for name, bandwidth in links.items():
            comm = 2 * (n - 1) / n * grad_bytes / bandwidth
            exposed = max(0.0, comm - compute * 2 / 3)
            step = compute + exposed
            out[f"{n}_gpus_{name}"] = {"compute_s_per_step": compute, "allreduce_s_per_step": comm,
                                       "exposed_comm_s": exposed, "efficiency": compute / step,
                                       "hours_to_loss": tokens_to_loss / step_tokens * step / 3600}
    out["this_gpt_params"] = params
    out["this_gpt_allreduce_bytes_per_step_2_ranks"] = 2 * (2 - 1) / 2 * 2 * params  # bf16 grads on this CPU
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--skip", type=int, default=3, help="warm-up iterations not counted")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--embd", type=int, default=192)
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32, help="global batch, sequences per iteration")
    parser.add_argument("--texts", type=int, default=20000, help="rows of the cleaning benchmark")
    args = parser.parse_args()

    data = gpt_data()
    rates: dict[str, list[float]] = {"1p1t": [], "1p2t": [], "2p1t": []}
    commands: dict[str, str] = {}
    for run in range(args.runs):
        for setup in rates:
            rate, cmd = train_run(setup, data, args)
            rates[setup].append(rate)
            commands[setup] = " ".join(cmd)
        print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:,.0f} tok/s" for k, v in rates.items()))
    med = {k: median(v) for k, v in rates.items()}
    efficiency = med["2p1t"] / (2 * med["1p1t"])
    vs_threads = med["2p1t"] / med["1p2t"]
    print(f"median tok/s: {med}; scaling efficiency 2p1t / (2 x 1p1t) = {efficiency:.2f}; "
          f"2 processes vs 2 threads = {vs_threads:.2f}x")

    texts = text_dataset(args.texts)
    seconds: dict[str, list[float]] = {"local": [], "dask": []}
    outs = {}
    for _ in range(args.runs):
        for executor in seconds:
            took, cmd, outs[executor] = clean_run(executor, texts, workers=2)
            seconds[executor].append(took)
            commands[f"clean_{executor}"] = " ".join(cmd)
    from genchain.data.dataset import content_hash

    same = content_hash(outs["local"], ["train"]) == content_hash(outs["dask"], ["train"])
    clean_rate = {k: args.texts / median(v) for k, v in seconds.items()}
    print(f"clean rows/s: local {clean_rate['local']:,.0f}, dask x2 {clean_rate['dask']:,.0f} "
          f"({clean_rate['dask'] / clean_rate['local']:.2f}x); identical output: {same}")

    from genchain.models.gpt import GPT, GPTConfig

    params = sum(p.numel() for p in GPT(GPTConfig(vocab_size=65, n_layer=args.layers, n_head=args.heads,
                                                  n_embd=args.embd, block_size=args.block)).parameters())
    write_results("scaling", {
        "claim": "scaling from 1 to 2 processes on this machine's 2 CPU cores (no GPU lent to this task), and the "
                 "data executor local vs Dask; projection of GPT-2 124M time-to-loss on 8 and 64 A100s",
        "model": {"n_layer": args.layers, "n_head": args.heads, "n_embd": args.embd, "block_size": args.block,
                  "params": params, "global_batch": args.batch, "tokens_per_iter": args.batch * args.block},
        "tokens_per_s": rates, "median_tokens_per_s": med,
        "scaling_efficiency": efficiency, "scaling_efficiency_definition": "tok/s(2 procs x 1 thread) / "
        "(2 x tok/s(1 proc x 1 thread)), same global batch", "two_procs_vs_two_threads": vs_threads,
        "clean_seconds": seconds, "clean_rows_per_s": clean_rate, "clean_rows": args.texts,
        "clean_outputs_identical": same, "projection": projection(params),
        "commands": commands, "runs": args.runs, "iters_per_run": args.iters, "warmup_iters_skipped": args.skip,
    })


if __name__ == "__main__":
    main()

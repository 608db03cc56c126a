"""Claim 2: wall time to val loss <= 1.88 on tinyshakespeare (character level), against nanoGPT's CPU recipe.

nanoGPT runs the recipe its README gives for CPU (4 layers, 4 heads, 128 wide, block 64, batch 12, 2000
iterations, eval every 250 with 20 batches), which ends near val loss 1.88. genchain runs its own recipe
(RECIPE below). Time is wall time from process start, imports included, to the first evaluation that
reports val loss <= 1.88. Each side is judged by its own evaluation, as a user would see it.

    python benchmarks/bench_time_to_loss.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time

from common import GENCHAIN, WORK, median, nanogpt_dir, prepare_data, stream_lines, write_results

TARGET = 1.88
RECIPE = ["n_layer=4", "n_head=4", "n_embd=128", "block_size=64", "batch_size=32", "dropout=0",
          "learning_rate=3e-3", "min_lr=3e-4", "warmup_iters=30", "max_iters=1000", "lr_decay_iters=1000",
          "eval_interval=100", "eval_iters=20", "log_interval=100", "tensorboard=false"]


def nanogpt_run() -> tuple[float | None, float, list[tuple[float, float]], list[str]]:
    nano = nanogpt_dir()
    cmd = [sys.executable, str(nano / "train.py"), str(nano / "config" / "train_shakespeare_char.py"),
           "--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1", "--block_size=64",
           "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--max_iters=2000",
           "--lr_decay_iters=2000", "--dropout=0.0", f"--out_dir={WORK / 'nanogpt_ttl'}"]
    lines = stream_lines(cmd, cwd=WORK / "nanogpt_cwd")
    evals = [(t, float(m.group(1))) for t, line in lines if (m := re.search(r"^step \d+: .*val loss ([\d.]+)", line))]
    hit = next((t for t, loss in evals if loss <= TARGET), None)
    return hit, lines[-1][0], evals, cmd


def genchain_run(data) -> tuple[float | None, float, list[tuple[float, float]], list[str]]:
    out = WORK / "ttl_run"
    shutil.rmtree(out, ignore_errors=True)
    cmd = GENCHAIN + ["train", "gpt", "--data", str(data), "--out", str(out), *RECIPE]
    started = time.time()
    lines = stream_lines(cmd)
    points = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [(p["time"] - started, p["val_loss"]) for p in points if p["kind"] == "eval"]
    hit = next((t for t, loss in evals if loss <= TARGET), None)
    return hit, lines[-1][0] if lines else time.time() - started, evals, cmd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    data = prepare_data()
    results: dict[str, list] = {"nanoGPT": [], "genchain": []}
    commands = {}
    for run in range(args.runs):
        for name, func in (("nanoGPT", nanogpt_run), ("genchain", lambda: genchain_run(data))):
            hit, total, evals, cmd = func()
            commands[name] = " ".join(cmd)
            results[name].append({"seconds_to_target": hit, "total_seconds": total, "final_val_loss": evals[-1][1],
                                  "evals": evals})
            shown = f"{hit:.1f}s" if hit is not None else "not reached"
            print(f"run {run + 1} {name}: {shown} to val <= {TARGET}; final val {evals[-1][1]:.4f} "
                  f"after {total:.1f}s")

    def summary(name: str) -> tuple[float, float]:
        # A run that never reaches the target counts with its whole wall time (a lower bound on its time).
        times = [r["seconds_to_target"] or r["total_seconds"] for r in results[name]]
        return median(times), median([r["final_val_loss"] for r in results[name]])

    (ours, our_loss), (theirs, their_loss) = summary("genchain"), summary("nanoGPT")
    print(f"median time to val <= {TARGET}: genchain {ours:.1f}s, nanoGPT {theirs:.1f}s -> {theirs / ours:.2f}x "
          f"faster (target >= 4x); median final val loss: genchain {our_loss:.4f}, nanoGPT {their_loss:.4f}")
    write_results("time_to_loss", {
        "claim": f"reach val loss <= {TARGET} in <= 1/4 of nanoGPT's CPU-recipe wall time",
        "peer": "nanoGPT train.py with its README CPU recipe",
        "genchain_recipe": RECIPE, "runs": results, "median_seconds": {"genchain": ours, "nanoGPT": theirs},
        "speedup": theirs / ours, "target_speedup": 4.0, "met": theirs / ours >= 4.0,
        "reached": {k: sum(r["seconds_to_target"] is not None for r in v) for k, v in results.items()},
        "commands": commands,
    })


if __name__ == "__main__":
    main()

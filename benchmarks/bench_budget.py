"""Claim 3: the best validation loss genchain reaches on tinyshakespeare (character level) in 10 CPU minutes.

The peer figure is quoted, not run: nanoGPT's README reports val loss 1.47 for train_shakespeare_char after
about 3 minutes on one A100 GPU. Here the whole budget, evaluations and checkpoints included, is 600 s of
wall time on this machine's CPU (``max_seconds``), with the recipe below.

    python benchmarks/bench_budget.py [--seconds 600]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time

from common import GENCHAIN, WORK, prepare_data, stream_lines, write_results

RECIPE = ["n_layer=4", "n_head=4", "n_embd=256", "block_size=128", "batch_size=32", "dropout=0.1",
          "learning_rate=2e-3", "min_lr=2e-4", "warmup_iters=100", "max_iters=2600", "lr_decay_iters=2300",
          "eval_interval=250", "eval_iters=40", "log_interval=50", "tensorboard=false"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    args = parser.parse_args()
    data = prepare_data()
    out = WORK / "budget_run"
    shutil.rmtree(out, ignore_errors=True)
    cmd = GENCHAIN + ["train", "gpt", "--data", str(data), "--out", str(out), *RECIPE,
                      f"max_seconds={args.seconds}"]
    started = time.time()
    stream_lines(cmd)
    wall = time.time() - started
    points = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [(p["iter"], round(p["time"] - started, 1), p["val_loss"]) for p in points if p["kind"] == "eval"]
    best = min(loss for _, _, loss in evals)
    print(f"best val loss {best:.4f} in {wall:.0f}s wall ({evals[-1][0]} iterations); target <= 1.55; "
          "nanoGPT on an A100 (quoted): 1.47")
    write_results("budget", {
        "claim": "best val loss in a 10-minute CPU budget (aim <= 1.55)",
        "peer": "nanoGPT README: 1.47 on one A100 in about 3 minutes (quoted, not run here)",
        "recipe": RECIPE, "budget_seconds": args.seconds, "wall_seconds": wall, "best_val_loss": best,
        "evals": evals, "target": 1.55, "met": best <= 1.55, "command": " ".join(cmd),
    })


if __name__ == "__main__":
    main()

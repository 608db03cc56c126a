"""Issue 6, claim 2: are generated chorales closer to held-out Bach than random notes and a Markov chain?

1. ``genchain train music --data bach-chorales`` (music21's corpus, ~400 chorales, 10% of pieces held out by
   name hash, +-5 semitone transposition) for a fixed CPU-time budget (``max_cpu_seconds``: CPU time of the
   training process, what "the same work" means on a shared machine), the default ``music-gpt``.
2. :func:`genchain.eval.music.evaluate_run`: ``--num`` generated pieces of ``--bars`` bars, in the held-out
   pieces' keys and metres, against the held-out chorales: pitch-class and duration histogram distances (total
   variation) and pitch range, notes per bar, in-key share -- beside, measured in the same run, uniform random
   notes, a first-order Markov chain over (onset step, pitch, duration) fitted on the training split, and
   held-out vs training Bach (the floor). Ratios are printed against both baselines.
3. Generation speed: pieces (of ``--bars`` bars) per second, batch of 16, one thread.

    flock /tmp/bench/bench.lock .venv/bin/python benchmarks/bench_music.py [--cpu-seconds 600] [--num 64]
    ... --quick       # a smoke test: 20 CPU seconds, 8 pieces, results not written
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time

from common import GENCHAIN, WORK, median, write_results

RUN = WORK / "music_run"


def train(cpu_seconds: float) -> tuple[list[str], float]:
    if RUN.exists():
        shutil.rmtree(RUN)
    cmd = GENCHAIN + ["train", "music", "--data", "bach-chorales", "--out", str(RUN),
                      f"max_cpu_seconds={cpu_seconds}", "max_iters=1000000", "lr_decay_iters=3000",
                      "eval_interval=200", "tensorboard=false"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return cmd, time.perf_counter() - start


def training_rate() -> tuple[float, int, float]:
    """Median tokens/s over the engine's logging windows, the last iteration, the best validation loss."""
    rows = [json.loads(line) for line in (RUN / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r.get("kind") == "train"]
    evals = [r["val_loss"] for r in rows if "val_loss" in r]
    return (median([r["items_per_s"] for r in train_rows if r.get("items_per_s")]), int(train_rows[-1]["iter"]),
            min(evals))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-seconds", type=float, default=600.0)
    parser.add_argument("--num", type=int, default=64)
    parser.add_argument("--bars", type=int, default=8)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    cpu, num = (20.0, 8) if args.quick else (args.cpu_seconds, args.num)

    from genchain.eval.music import evaluate_run

    cmd, train_wall = train(cpu)
    tokens_per_s, iters, val_loss = training_rate()
    report = evaluate_run(RUN, num=num, bars=args.bars)

    names = ("model", "markov", "random", "heldout_vs_train")
    print(f"trained {iters} iterations in {cpu:.0f} CPU s ({train_wall:.0f} s wall), {tokens_per_s:.0f} tokens/s, "
          f"best val_loss {val_loss:.3f}")
    for name in names:
        r = report[name]
        print(f"  {name:17s} pitch-class TV {r['pitch_class_tv']:.3f}  duration TV {r['duration_tv']:.3f}  "
              f"range {r['pitch_range']:.1f}  notes/bar {r['notes_per_bar']:.1f}  in-key {r['in_key']:.3f}")
    ratios = {}
    for metric in ("pitch_class_tv", "duration_tv"):
        for base in ("random", "markov"):
            ratios[f"{metric}_model_vs_{base}"] = round(report["model"][metric] / max(report[base][metric], 1e-9), 3)
    for name, value in ratios.items():
        print(f"  {name}: {value:.2f}x (below 1: the model is closer to held-out Bach)")
    print(f"generation: {report['samples_per_second']:.2f} pieces of {args.bars} bars per second")
    if args.quick:
        return
    write_results("music", {
        "claim": "pitch-class and duration histogram distances of generated chorales to held-out Bach, vs a "
                 "random-note and a first-order Markov baseline (issue 6)",
        "command": " ".join(cmd[2:]), "cpu_seconds": cpu, "train_wall_seconds": round(train_wall, 1),
        "iterations": iters, "train_tokens_per_s": round(tokens_per_s, 1), "best_val_loss": round(val_loss, 4),
        "num": num, "bars": args.bars, "metrics": {name: report[name] for name in names}, "ratios": ratios,
        "samples_per_second": report["samples_per_second"],
        "heldout_pieces": report["heldout_pieces"], "train_pieces": report["train_pieces"],
        "note": "TV = total variation distance of histograms (0 same, 1 disjoint); heldout_vs_train is the floor",
    })


if __name__ == "__main__":
    main()

"""Regenerate the performance table in the top-level README from ``results/*.json``.

    python benchmarks/make_table.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"


def load(name: str) -> dict | None:
    path = ROOT / "benchmarks" / "results" / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def rows() -> list[str]:
    out = ["| claim | genchain | peer (same machine, same run) | ratio | target | met |", "|---|---|---|---|---|---|"]
    if r := load("train_throughput"):
        ours, theirs = (sorted(r[k])[len(r[k]) // 2] for k in ("genchain_tokens_per_s", "nanogpt_tokens_per_s"))
        out.append(f"| 1. training tokens/s, nanoGPT shakespeare_char model, CPU | {ours:,.0f} tok/s "
                   f"(MFU {r['mfu']['genchain']:.0%}) | nanoGPT {theirs:,.0f} tok/s (MFU {r['mfu']['nanoGPT']:.0%}) | "
                   f"{r['ratio_of_medians']:.2f}x | >= 4x | {'yes' if r['met'] else 'no'} |")
    if r := load("time_to_loss"):
        m = r["median_seconds"]
        out.append(f"| 2. wall time to val loss <= 1.88 | {m['genchain']:.1f} s | nanoGPT CPU recipe "
                   f"{m['nanoGPT']:.1f} s | {r['speedup']:.2f}x | >= 4x | {'yes' if r['met'] else 'no'} |")
    if r := load("budget"):
        out.append(f"| 3. best val loss in 10 CPU minutes | {r['best_val_loss']:.3f} | nanoGPT on an A100: 1.47 "
                   f"(quoted) | - | <= 1.55 | {'yes' if r['met'] else 'no'} |")
    if r := load("generate"):
        for batch in ("batch_1", "batch_32"):
            g = r["results"][batch]
            out.append(f"| 4. generation tokens/s, {batch.replace('_', ' ')} | {g['genchain_tokens_per_s']:,.0f} | "
                       f"transformers generate() {g['transformers_tokens_per_s']:,.0f} "
                       f"({g['transformers_best_dtype']}) | {g['ratio']:.2f}x | >= 2x | "
                       f"{'yes' if g['ratio'] >= 2 else 'no'} |")
    return out


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    table = "\n".join([START, *rows(), END])
    if START in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: table, text, flags=re.S)
    else:
        text = text.replace("BENCHMARK_TABLE", table)
    readme.write_text(text)
    print(table)


if __name__ == "__main__":
    main()

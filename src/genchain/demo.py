"""``genchain demo``: the text chain end to end on the built-in Shakespeare corpus, in a few minutes on a CPU."""

from __future__ import annotations

import shutil
from pathlib import Path

from genchain.data.tokens import prepare_text
from genchain.generate.text import SamplingConfig, TextGenerator
from genchain.train.lm import train_gpt

# A small model that learns readable character-level English within the time budget on two CPU cores.
DEMO_OVERRIDES = [
    "n_layer=4", "n_head=4", "n_embd=192", "block_size=128",
    "batch_size=32", "learning_rate=3e-3", "min_lr=3e-4", "warmup_iters=50", "max_iters=1500",
    "lr_decay_iters=1500", "eval_interval=250", "eval_iters=20", "log_interval=25",
]


def run_demo(workdir: Path, seconds: float) -> None:
    data_dir, run_dir = workdir / "data", workdir / "run"
    print(f"[1/3] preparing builtin:shakespeare -> {data_dir}")
    manifest = prepare_text(["builtin:shakespeare"], data_dir, tokenizer="char", overwrite=True)
    print(f"      {manifest['documents']} works, {manifest['tokens']['train']:,} training characters")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    print(f"[2/3] training a GPT for up to {seconds:.0f}s -> {run_dir}")
    result = train_gpt(data_dir, run_dir, overrides=DEMO_OVERRIDES + [f"max_seconds={seconds}"])
    print(f"      {result.iters} iterations, val loss {result.last_metrics['val_loss']:.3f}")
    print("[3/3] generating")
    generator = TextGenerator.from_run(run_dir)
    for text in generator.generate("ROMEO:", num=2, cfg=SamplingConfig(max_new_tokens=300, seed=1)):
        print("-" * 60)
        print("ROMEO:" + text)
    print("-" * 60)
    print(f"next: genchain generate text --run {run_dir} --prompt 'JULIET:' --stream")

"""Run every benchmark in turn, then refresh the README table.

    NANOGPT_DIR=/path/to/nanoGPT python benchmarks/run_all.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["bench_train_throughput.py", "bench_time_to_loss.py", "bench_generate.py", "bench_budget.py",
           "bench_pii.py", "bench_near_dedup.py", "bench_vae.py", "bench_gan_throughput.py",
           "bench_gan_quality.py", "bench_ledger.py", "bench_tamper.py", "bench_watermark_text.py",
           "bench_watermark_image.py", "bench_text_vae.py", "bench_novelty.py", "bench_scaling.py",
           "bench_serve_load.py", "bench_copywriting.py", "bench_music.py", "bench_speech.py", "bench_video.py",
           "make_table.py"]

if __name__ == "__main__":
    for script in SCRIPTS:
        print(f"== {script}", flush=True)
        subprocess.run([sys.executable, str(HERE / script)], check=True, cwd=HERE)

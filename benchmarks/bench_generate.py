"""Claim 4: generation tokens/s at batch 1 and batch 32 against transformers' ``generate()`` on the same weights.

The model is nanoGPT's shakespeare_char shape (6 x 384, block 256), exported with ``genchain export hf`` so
both sides run identical weights. Each side samples (temperature 1, no top-k) from a one-token prompt to the
end of the context window (255 new tokens: GPT-2 models cannot go past ``n_positions``). Each side gets its
best dtype on this machine: genchain its default (bf16 on a CPU with native bf16); transformers the faster
of fp32 and bf16, measured here.

    python benchmarks/bench_generate.py [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time

import torch

from common import GENCHAIN, WORK, median, prepare_data, write_results

NEW_TOKENS = 255


def trained_run(data) -> tuple:
    run = WORK / "generate_run"
    if not (run / "model.safetensors").is_file():
        shutil.rmtree(run, ignore_errors=True)
        subprocess.run(GENCHAIN + ["train", "gpt", "--data", str(data), "--out", str(run), "n_layer=6", "n_head=6",
                                   "n_embd=384", "block_size=256", "batch_size=8", "max_iters=20", "eval_iters=2",
                                   "tensorboard=false"], check=True, capture_output=True)
    hf_dir = WORK / "generate_hf"
    shutil.rmtree(hf_dir, ignore_errors=True)
    subprocess.run(GENCHAIN + ["export", "hf", "--run", str(run), "-o", str(hf_dir)], check=True, capture_output=True)
    return run, hf_dir


def time_call(fn, runs: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from transformers import GPT2LMHeadModel

    from genchain.generate.text import SamplingConfig, TextGenerator

    run, hf_dir = trained_run(prepare_data())
    ours = TextGenerator.from_run(run)
    cfg = SamplingConfig(max_new_tokens=NEW_TOKENS, temperature=1.0, top_k=0, seed=0)
    prompt = ours.encode_prompt("")
    hf_models = {dtype: GPT2LMHeadModel.from_pretrained(hf_dir, dtype=dtype).eval()
                 for dtype in (torch.float32, torch.bfloat16)}
    results = {}
    for batch in (1, 32):
        def genchain_call(batch=batch) -> None:
            for _ in ours.generate_ids(prompt, batch, cfg):
                pass

        our_times = time_call(genchain_call, args.runs)
        hf_times = {}
        for dtype, model in hf_models.items():
            ids = torch.tensor([prompt] * batch)

            def hf_call(model=model, ids=ids) -> None:
                with torch.no_grad():
                    model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=0,
                                   temperature=1.0, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                                   pad_token_id=0)

            hf_times[str(dtype).removeprefix("torch.")] = time_call(hf_call, args.runs)
        best_dtype = min(hf_times, key=lambda d: median(hf_times[d]))
        ours_tps = batch * NEW_TOKENS / median(our_times)
        theirs_tps = batch * NEW_TOKENS / median(hf_times[best_dtype])
        results[f"batch_{batch}"] = {
            "genchain_tokens_per_s": ours_tps, "transformers_tokens_per_s": theirs_tps,
            "transformers_best_dtype": best_dtype, "ratio": ours_tps / theirs_tps,
            "genchain_seconds": our_times, "transformers_seconds": hf_times,
        }
        print(f"batch {batch}: genchain {ours_tps:,.0f} tok/s ({ours.dtype}), transformers {theirs_tps:,.0f} tok/s "
              f"({best_dtype}) -> {ours_tps / theirs_tps:.2f}x (target >= 2x)")
    write_results("generate", {
        "claim": "generation tokens/s >= 2x transformers generate() at batch 1 and 32",
        "peer": "transformers GPT2LMHeadModel.generate() on the exported weights",
        "new_tokens": NEW_TOKENS, "results": results,
        "met": all(r["ratio"] >= 2.0 for r in results.values()),
    })


if __name__ == "__main__":
    main()

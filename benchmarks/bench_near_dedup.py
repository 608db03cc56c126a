"""Claim: near-dedup finds planted near duplicates (precision and recall >= 0.95 at threshold 0.8) at >= 2x the
docs/s of a plain datasketch MinHashLSH script, with memory bounded by the index.

Corpus (deterministic, seed 0): short documents of 20-60 words drawn independently from the word frequencies of
tinyshakespeare (a real, Zipf-shaped vocabulary of about 11k words), 75 % originals; 20 % near copies of an
original with 1-10 % of their words edited (each edit a substitution, deletion or insertion of a word drawn from
the same distribution); 5 % exact copies. Every copy comes after its original, so the truth is "is a copy".

The peer is datasketch written the obvious way: ``MinHash(num_perm=128)`` per document, ``update`` per
shingle, ``lsh.query`` then ``lsh.insert`` into ``MinHashLSH(threshold=0.8, num_perm=128)``; it flags a
document when the query returns anything. Both sides use the same shingles (``genchain.data.dedup.shingles``,
word unigrams) and read the corpus line by line from the same file. Each run is a fresh subprocess, so its
peak RSS (``VmHWM``; the worker processes' peak, ``ru_maxrss`` of its children, is reported apart) is its own.
genchain runs with 1 and with 2 worker processes; the peer is single-process. A third genchain run times the
whole ``genchain data clean --dedup exact,near`` (normalisation, exact then near dedup, reading and writing Arrow)
on the corpus ingested as a dataset (one row per line; the ingest itself is not timed).

    python benchmarks/bench_near_dedup.py [--docs 100000 1000000] [--quick] [--repeats 3] [--peer-weights]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from common import ROOT, WORK, require_shakespeare, write_results

NUM_PERM = 128
THRESHOLD = 0.8
EDIT_BUCKETS = [(0.01, 0.04), (0.04, 0.07), (0.07, 0.10)]


def vocabulary() -> tuple[list[str], np.ndarray]:
    from genchain.data.dedup import normalize_for_hash

    counts = Counter(normalize_for_hash(require_shakespeare().read_text(encoding="utf-8")).split())
    words = sorted(counts, key=lambda w: (-counts[w], w))
    freq = np.array([counts[w] for w in words], np.float64)
    return words, freq / freq.sum()


def edit(words: list[str], rate: float, rng: random.Random, draw) -> list[str]:
    """Apply max(1, round(rate * len)) random substitutions, deletions and insertions of single words."""
    words = list(words)
    for _ in range(max(1, round(rate * len(words)))):
        kind = rng.choice(("substitute", "delete", "insert"))
        position = rng.randrange(len(words))
        if kind == "substitute":
            words[position] = draw()
        elif kind == "delete" and len(words) > 1:
            del words[position]
        else:
            words.insert(position, draw())
    return words


def build_corpus(docs: int) -> Path:
    """Write ``docs`` lines and a truth file (.npz: is_copy, edit_rate, original index per line); cached."""
    path = WORK / f"near_dedup_{docs}.txt"
    truth_path = path.with_suffix(".npz")
    if path.is_file() and truth_path.is_file():
        return path
    words, prob = vocabulary()
    rng_np = np.random.default_rng(0)
    rng = random.Random(0)
    n_orig = round(docs * 0.75)
    n_near = round(docs * 0.20)
    n_exact = docs - n_orig - n_near
    lengths = rng_np.integers(20, 61, n_orig)
    ids = rng_np.choice(len(words), size=int(lengths.sum()), p=prob)
    bounds = np.concatenate(([0], np.cumsum(lengths)))
    originals = [[words[i] for i in ids[bounds[k]:bounds[k + 1]]] for k in range(n_orig)]
    spare = iter(rng_np.choice(len(words), size=n_near * 8, p=prob).tolist())

    def draw() -> str:
        return words[next(spare)]

    texts = [" ".join(doc) for doc in originals]
    source = list(range(n_orig))
    rate = [0.0] * n_orig
    keys = list(map(float, range(n_orig)))
    for k in range(n_near + n_exact):
        original = rng.randrange(n_orig)
        near = k < n_near
        rate.append(rng.uniform(0.01, 0.10) if near else 0.0)
        texts.append(" ".join(edit(originals[original], rate[-1], rng, draw)) if near else texts[original])
        source.append(original)
        keys.append(original + rng.uniform(0.001, n_orig - original))
    order = np.argsort(np.array(keys), kind="stable")
    WORK.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(texts[i] + "\n" for i in order)
    source_arr = np.array(source)[order]
    np.savez(truth_path, is_copy=order >= n_orig, edit_rate=np.array(rate)[order], source=source_arr)
    return path


def shingle_study(corpus: Path, samples: int = 3000) -> dict:
    """True Jaccard of planted pairs (by edit rate) and of random unrelated pairs, for several shinglings."""
    from genchain.data.dedup import shingles

    texts = corpus.read_text(encoding="utf-8").splitlines()
    truth = np.load(corpus.with_suffix(".npz"))
    first_of_source = {}
    for i, s in enumerate(truth["source"].tolist()):
        first_of_source.setdefault(s, i)
    rng = random.Random(1)
    near = [i for i in np.flatnonzero(truth["edit_rate"] > 0).tolist()]
    planted = [(first_of_source[int(truth["source"][i])], i, float(truth["edit_rate"][i]))
               for i in rng.sample(near, min(samples, len(near)))]
    unrelated = [tuple(rng.sample(range(len(texts)), 2)) for _ in range(samples)]

    def jaccard(a: set, b: set) -> float:
        return len(a & b) / max(len(a | b), 1)

    study = {}
    for ngram in (1, 2, 3):
        row = {}
        for lo, hi in EDIT_BUCKETS:
            js = [jaccard(shingles(texts[a], ngram), shingles(texts[b], ngram)) for a, b, r in planted if lo <= r < hi]
            row[f"planted_{lo:.2f}-{hi:.2f}"] = {"mean": float(np.mean(js)), "min": float(np.min(js)),
                                                 "share_ge_threshold": float(np.mean(np.array(js) >= THRESHOLD))}
        js = [jaccard(shingles(texts[a], ngram), shingles(texts[b], ngram)) for a, b in unrelated
              if truth["source"][a] != truth["source"][b]]
        row["unrelated"] = {"mean": float(np.mean(js)), "max": float(np.max(js)), "p99": float(np.quantile(js, 0.99))}
        study[f"word_{ngram}gram"] = row
    return study


def run_child(impl: str, corpus: Path, workers: int, weights: str) -> dict:
    """Run one implementation in a fresh interpreter and return its timing, peak memory and flags."""
    flags_path = WORK / f"near_dedup_flags_{impl}_{workers}.npy"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", impl, "--corpus", str(corpus),
           "--workers", str(workers), "--weights", weights, "--flags-out", str(flags_path)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["flags"] = np.load(flags_path)
    flags_path.unlink()
    return result


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Not ru_maxrss: Linux carries that over from the parent
    through fork and exec, so a child of a big parent would report the parent's peak."""
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024


class AnonymousMemorySampler:
    """The peak of this process's anonymous memory (``RssAnon``), sampled every 20 ms in a thread.

    ``VmHWM`` also counts clean file pages a memory map has touched (genchain reads its on-disk signature file
    through one), which the kernel can drop at any time; ``RssAnon`` is the memory the process itself holds, the
    figure that has to stay bounded as the corpus grows. The kernel keeps no peak of it, hence the sampling."""

    def __init__(self) -> None:
        import threading

        self.peak_mb = self.read_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def read_mb() -> float:
        status = Path("/proc/self/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("RssAnon:")).split()[1]) / 1024

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_mb = max(self.peak_mb, self.read_mb())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak_mb, self.read_mb())


def child(impl: str, corpus: Path, workers: int, weights: str, flags_out: Path) -> None:
    """Inside the subprocess: dedup the corpus streamed from its file, print one JSON line."""
    from genchain.data.dedup import NearDedupConfig, find_near_duplicates, shingles

    rss_before = peak_rss_mb()
    anon_before = AnonymousMemorySampler.read_mb()
    sampler = AnonymousMemorySampler()
    with open(corpus, encoding="utf-8") as fh:
        lines = (line.rstrip("\n") for line in fh)
        start = time.perf_counter()
        if impl == "genchain":
            flags = find_near_duplicates(lines, NearDedupConfig(threshold=THRESHOLD, num_perm=NUM_PERM),
                                         progress=False, workers=workers)
        elif impl == "genchain_clean":
            flags = clean_flags(corpus)
        else:
            from datasketch import MinHash, MinHashLSH

            lsh_weights = (0.5, 0.5) if weights == "default" else tuple(map(float, weights.split(",")))
            lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, weights=lsh_weights)
            found = []
            for i, text in enumerate(lines):
                minhash = MinHash(num_perm=NUM_PERM)
                for shingle in shingles(text):
                    minhash.update(shingle.encode("utf-8"))
                found.append(bool(lsh.query(minhash)))
                lsh.insert(i, minhash)
            flags = np.array(found)
        seconds = time.perf_counter() - start
    np.save(flags_out, flags)
    print(json.dumps({"seconds": seconds, "docs": int(flags.size), "docs_per_s": flags.size / seconds,
                      "rss_after_imports_mb": rss_before, "peak_rss_mb": peak_rss_mb(),
                      "anon_after_imports_mb": anon_before, "peak_anon_mb": sampler.stop(),
                      "peak_rss_workers_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


def ingested(corpus: Path) -> Path:
    """The corpus as a genchain text dataset (one row per line), made once and reused."""
    from genchain.data.dataset import is_dataset
    from genchain.data.ingest import ingest

    dataset = corpus.with_name(corpus.stem + "_dataset")
    if not is_dataset(dataset):
        ingest([str(corpus)], dataset, kind="text", unit="line", overwrite=True)
    return dataset


def clean_flags(corpus: Path) -> np.ndarray:
    """The whole ``genchain data clean --dedup exact,near`` on the ingested corpus (normalisation, exact and near
    dedup, Arrow in and out); a document is flagged when its row is not in the output."""
    from genchain.data.clean import clean
    from genchain.data.dataset import open_dataset

    dataset = open_dataset(corpus.with_name(corpus.stem + "_dataset"))
    out = WORK / f"{corpus.stem}_cleaned"
    clean(dataset.path, out, dedup=("exact", "near"), near_threshold=THRESHOLD, overwrite=True)
    kept = np.zeros(dataset.num_rows(), dtype=bool)
    kept[np.array([int(i) for i in open_dataset(out).column("id")], dtype=np.int64)] = True
    return ~kept


def quality(flags: np.ndarray, truth: dict) -> dict:
    is_copy = truth["is_copy"]
    hit = flags & is_copy
    result = {"precision": float(hit.sum() / max(flags.sum(), 1)), "recall": float(hit.sum() / is_copy.sum()),
              "flagged": int(flags.sum()), "true_copies": int(is_copy.sum())}
    rate = truth["edit_rate"]
    result["recall_exact_copies"] = float(flags[is_copy & (rate == 0)].mean())
    for lo, hi in EDIT_BUCKETS:
        chosen = is_copy & (rate >= lo) & (rate < hi)
        result[f"recall_edits_{lo:.2f}-{hi:.2f}"] = float(flags[chosen].mean())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, nargs="+", default=[100_000, 1_000_000], help="corpus sizes")
    parser.add_argument("--quick", action="store_true", help="a 10k-document smoke run, one repeat, nothing written")
    parser.add_argument("--repeats", type=int, default=3, help="genchain repeats (median); the peer runs once")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--peer-weights", action="store_true",
                        help="also run the peer with genchain's LSH weights (its band choice), at the smallest size")
    parser.add_argument("--child", choices=["genchain", "genchain_clean", "peer"], help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--weights", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--flags-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.corpus, args.workers, args.weights, args.flags_out)
        return
    scales, repeats = ([10_000], 1) if args.quick else (sorted(args.docs), args.repeats)
    from genchain.data.dedup import LSH_WEIGHTS, NearDedupConfig, lsh_bands

    results = {}
    for docs in scales:
        peers = [] if args.skip_peer else [("peer_datasketch", "default")]
        if args.peer_weights and docs == scales[0] and not args.skip_peer:
            peers.append(("peer_datasketch_genchain_weights", ",".join(map(str, LSH_WEIGHTS))))
        results[str(docs)] = measure_scale(docs, repeats, peers)
    config = NearDedupConfig()
    command = "python benchmarks/bench_near_dedup.py " + " ".join(sys.argv[1:])
    if args.quick:
        print(f"smoke run only, no results written; the full run: {command.replace('--quick', '').strip()}")
        return
    genchain_runs = [run for scale in results.values() for name, run in scale["runs"].items()
                     if name.startswith("genchain")]
    ratios = [r for scale in results.values() for r in scale["ratios"].values()]
    write_results("near_dedup", {
        "claim": "near-dedup precision and recall >= 0.95 at threshold 0.8 on planted near duplicates; "
                 ">= 2x the docs/s of a plain datasketch MinHashLSH script; memory bounded by the index",
        "peer": "datasketch MinHash(num_perm=128) per doc, update per shingle, MinHashLSH(threshold=0.8) "
                "query then insert; same shingles (word unigrams)",
        "corpus": {"vocabulary": "tinyshakespeare word frequencies", "doc_words": "20-60", "originals": 0.75,
                   "near_copies": 0.20, "exact_copies": 0.05, "edit_rate": "uniform 1-10 % of words"},
        "config": {"threshold": config.threshold, "num_perm": config.num_perm, "ngram": config.ngram,
                   "lsh_weights": LSH_WEIGHTS, "bands_rows": lsh_bands(config)},
        "scales": results,
        "met": {"quality": all(r["precision"] >= 0.95 and r["recall"] >= 0.95 for r in genchain_runs),
                "speed_2x": bool(ratios) and min(ratios) >= 2.0},
        "command": command,
    })


def measure_scale(docs: int, repeats: int, peers: list[tuple[str, str]]) -> dict:
    """Build (or reuse) the corpus of ``docs`` documents, run every implementation on it, score each."""
    started = time.perf_counter()
    corpus = build_corpus(docs)
    print(f"corpus: {docs} docs at {corpus} ({time.perf_counter() - started:.1f}s)")
    truth = dict(np.load(corpus.with_suffix(".npz")))
    study = shingle_study(corpus)
    for name, row in study.items():
        print(name, {k: {m: round(v, 3) for m, v in d.items()} for k, d in row.items()})
    runs = {}
    for workers in (1, 2):
        results = [run_child("genchain", corpus, workers, "") for _ in range(repeats)]
        middle = sorted(results, key=lambda r: r["seconds"])[len(results) // 2]
        middle["seconds_all"] = [r["seconds"] for r in results]
        runs[f"genchain_{workers}proc"] = middle
    ingested(corpus)
    results = [run_child("genchain_clean", corpus, 1, "") for _ in range(repeats)]
    middle = sorted(results, key=lambda r: r["seconds"])[len(results) // 2]
    middle["seconds_all"] = [r["seconds"] for r in results]
    runs["genchain_clean_pipeline"] = middle
    for name, weights in peers:
        runs[name] = run_child("peer", corpus, 1, weights)
    for name, run in runs.items():
        run.update(quality(run.pop("flags"), truth))
        print(f"{docs:>8} {name:34s} {run['docs_per_s']:9.0f} docs/s  peak RSS {run['peak_rss_mb']:6.0f} MB "
              f"(anonymous {run['peak_anon_mb']:.0f}) "
              f"(after imports {run['rss_after_imports_mb']:.0f}, workers {run['peak_rss_workers_mb']:.0f})  "
              f"precision {run['precision']:.4f}  recall {run['recall']:.4f}")
    ratios = {}
    if "peer_datasketch" in runs:
        for workers in (1, 2):
            ratios[f"genchain_{workers}proc_over_peer"] = (runs[f"genchain_{workers}proc"]["docs_per_s"]
                                                           / runs["peer_datasketch"]["docs_per_s"])
        ratios["genchain_clean_pipeline_over_peer"] = (runs["genchain_clean_pipeline"]["docs_per_s"]
                                                       / runs["peer_datasketch"]["docs_per_s"])
        print("docs/s ratios:", {k: round(v, 2) for k, v in ratios.items()})
    return {"shingle_study": study, "runs": runs, "ratios": ratios}


if __name__ == "__main__":
    main()

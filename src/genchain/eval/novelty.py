"""Novelty, the memorisation check: which generated n-grams occur verbatim in the training text, and the
longest span each sample copies from it.

Both are indexed so that a 5 MB training corpus answers 1,000 samples in seconds (``benchmarks/bench_novelty.py``):

* **n-gram share** (n = 8 and 13, the lengths used in memorisation studies such as Carlini et al. 2023,
  "Quantifying Memorization Across Neural Language Models", and the 13-gram overlap test of GPT-3's
  contamination analysis): every reference n-gram becomes a 64-bit polynomial hash of its unit ids, kept in a
  sorted numpy array; a sample's n-grams are hashed the same way and looked up with ``searchsorted``. Two
  different n-grams share a hash with probability 2^-64 per pair, ~1e-8 expected false hits for a million
  reference n-grams against a million queries, so the share is exact in practice.
* **longest copied span**, exactly: a suffix array over the reference's unit ids (``pydivsufsort``, the
  libdivsufsort algorithm). A candidate span ``s[j : j + L]`` occurs iff its suffix-array interval is non-empty;
  the interval is found by binary search comparing actual units, never hashes, so a hash collision cannot make
  a false copy. A sample is walked only from the positions whose 8-gram hash hits (a copy of >= 8 units starts
  there), growing a match one unit at a time by binary search inside the current interval and asking each
  later position only whether it beats the best so far; a sample with no 8-gram hit tries shorter lengths
  (7 down to 1) from their hash hits, each verified the same way.

Units are those of :mod:`genchain.eval.text` (words, or characters for CJK). Reference documents are
separated by a unit id no text has, so no match crosses a document boundary.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from tqdm.auto import tqdm

from genchain.errors import InputError
from genchain.eval.text import tokenize, units_with_offsets

ORDERS = (8, 13)
_SEPARATOR = 0  # between reference documents
_UNKNOWN = -1  # a sample unit the reference never uses: it matches nothing
_SAMPLE_BREAK = -2  # between samples in a query batch: windows across it are not n-grams
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


def _mix(ids: np.ndarray) -> np.ndarray:
    """splitmix64 of each id, so the polynomial hash sees well-spread 64-bit values, not small integers."""
    z = ids.astype(np.int64).view(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def window_hashes(ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The 64-bit hash of every window ``ids[i : i + n]`` (uint64 arithmetic wraps modulo 2^64) and whether the
    window is made of real units only (no separator, break or unknown unit)."""
    count = len(ids) - n + 1
    if count <= 0:
        return np.zeros(0, np.uint64), np.zeros(0, bool)
    mixed = _mix(ids)
    hashes = mixed[:count].copy()
    for k in range(1, n):
        hashes = hashes * _MULTIPLIER + mixed[k:k + count]
    return hashes, windows_without(ids <= _SEPARATOR, n)


def windows_without(mask: np.ndarray, n: int) -> np.ndarray:
    """For each window of length ``n``: True when ``mask`` is False all through it."""
    running = np.concatenate([[0], np.cumsum(mask)])
    return (running[n:] - running[:len(mask) - n + 1]) == 0


@dataclass(frozen=True)
class CopiedSpan:
    """The longest run of a sample's units found verbatim in the reference (length 0: nothing copied)."""

    sample: int
    length: int
    text: str  # the span as it stands in the sample
    start: int  # unit offset in the sample
    document: int | None  # reference document index
    document_name: str | None
    offset: int | None  # unit offset in that document


class ReferenceIndex:
    """A reference (training) corpus indexed for n-gram look-ups and exact longest-match search.

    Args:
        documents: the reference texts.
        unit: ``word`` or ``char`` (see :mod:`genchain.eval.text`).
        names: optional document names (for instance file:line) quoted with a copied span.
        orders: the n-gram lengths whose share is measured.
    """

    def __init__(self, documents: Sequence[str], unit: str, names: Sequence[str] | None = None,
                 orders: Sequence[int] = ORDERS):
        from pydivsufsort import divsufsort

        if not documents:
            raise InputError("the reference corpus is empty; pass a dataset or files that hold text")
        self.unit = unit
        self.names = list(names) if names is not None else None
        self.orders = tuple(sorted(orders))
        self.vocab: dict[str, int] = {}
        ids: list[int] = []
        starts = []
        vocab = self.vocab
        for text in tqdm(documents, desc="index reference", unit="doc", leave=False,
                         disable=True if len(documents) < 1000 else None):
            starts.append(len(ids))
            ids.extend([vocab.setdefault(u, len(vocab) + 1) for u in tokenize(text, unit)])
            ids.append(_SEPARATOR)
        if len(ids) == len(documents):
            raise InputError(f"the reference corpus holds no {unit}s")
        self.units = len(ids) - len(documents)
        self.doc_starts = np.array(starts, dtype=np.int64)
        self.ids = ids  # a Python list: its slices compare as sequences at C speed in the binary search
        array = np.array(ids, dtype=np.int64)
        self._hashes = {n: self._reference_hashes(array, n) for n in self.orders}
        self._array = array
        self.suffix_array: list[int] = divsufsort(array.astype(np.int32)).tolist()

    @staticmethod
    def _reference_hashes(array: np.ndarray, n: int) -> np.ndarray:
        hashes, valid = window_hashes(array, n)
        return np.sort(hashes[valid])  # duplicates do no harm to searchsorted; np.unique is 10x slower here

    def _hashes_for(self, n: int) -> np.ndarray:
        if n not in self._hashes:  # shorter lengths, built only when a sample has no long copy
            self._hashes[n] = self._reference_hashes(self._array, n)
        return self._hashes[n]

    def _hits(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """For each window of ``query``: is it a real n-gram, and is its hash among the reference's."""
        hashes, valid = window_hashes(query, n)
        table = self._hashes_for(n)
        at = np.searchsorted(table, hashes).clip(max=max(len(table) - 1, 0))
        found = valid & (table[at] == hashes) if len(table) else np.zeros_like(valid)
        real = windows_without(query < _UNKNOWN, n)  # n-grams with unknown units count, though never found
        return real, found

    # ------------------------------------------------------------------------------------------- exact search
    def _interval(self, pattern: list[int]) -> tuple[int, int]:
        """The suffix-array interval of suffixes starting with ``pattern`` (empty: lo == hi)."""
        ids, length = self.ids, len(pattern)
        key = lambda p: ids[p:p + length]
        lo = bisect_left(self.suffix_array, pattern, key=key)
        return lo, bisect_right(self.suffix_array, pattern, lo=lo, key=key)

    def _narrow(self, lo: int, hi: int, depth: int, unit: int) -> tuple[int, int]:
        """Inside an interval whose suffixes share ``depth`` units, those whose next unit is ``unit``. Every
        suffix there continues past ``depth``: each document ends with a separator that no pattern holds."""
        ids = self.ids
        key = lambda p: ids[p + depth]
        lo2 = bisect_left(self.suffix_array, unit, lo, hi, key=key)
        return lo2, bisect_right(self.suffix_array, unit, lo2, hi, key=key)

    def occurs(self, pattern: list[int]) -> bool:
        lo, hi = self._interval(pattern)
        return hi > lo

    def _longest_from(self, query: list[int], starts: Sequence[int], best: int) -> tuple[int, int, int]:
        """The longest match beginning at one of ``starts`` if longer than ``best``: (length, start, ref pos)."""
        found = (best, -1, -1)
        for j in starts:
            if j + best >= len(query):
                break  # too few units left to beat the best
            lo, hi = self._interval(query[j:j + best + 1])
            if lo == hi:
                continue
            best += 1
            while j + best < len(query):
                lo2, hi2 = self._narrow(lo, hi, best, query[j + best])
                if lo2 == hi2:
                    break
                lo, hi, best = lo2, hi2, best + 1
            found = (best, j, self.suffix_array[lo])
        return found

    # ------------------------------------------------------------------------------------------------ queries
    def encode(self, text: str) -> list[int]:
        return [self.vocab.get(u, _UNKNOWN) for u in tokenize(text, self.unit)]

    def check(self, texts: Sequence[str]) -> dict:
        """Novelty of ``texts``: per order the share of n-grams found in the reference and of samples with any,
        and every sample's longest copied span (``spans``, a list of :class:`CopiedSpan` as dicts)."""
        encoded = [self.encode(t) for t in texts]
        bounds = np.cumsum([0] + [len(e) + 1 for e in encoded])  # sample i occupies [bounds[i], bounds[i+1] - 1)
        query = np.array([u for e in encoded for u in (*e, _SAMPLE_BREAK)], dtype=np.int64)
        result: dict = {"unit": self.unit, "reference_units": self.units, "orders": {}}
        hits_by_order = {}
        for n in self.orders:
            real, found = self._hits(query, n)
            hits_by_order[n] = found
            owner = np.searchsorted(bounds, np.flatnonzero(found), side="right") - 1  # the sample of each hit
            per_sample = np.bincount(owner, minlength=len(texts))
            result["orders"][str(n)] = {
                "ngrams": int(real.sum()), "found": int(found.sum()),
                "copied_share": float(found.sum() / real.sum()) if real.sum() else 0.0,
                "samples_with_copy": float(np.mean(per_sample > 0)) if texts else 0.0,
            }
        anchor = self.orders[0]
        spans = []
        for i in tqdm(range(len(texts)), desc="longest copies", unit="sample", leave=False,
                      disable=True if len(texts) < 200 else None):
            start, stop = int(bounds[i]), int(bounds[i + 1]) - 1
            window_hits = hits_by_order[anchor][start:max(start, stop - anchor + 1)]
            best = self._longest_from(encoded[i], np.flatnonzero(window_hits).tolist(), anchor - 1)
            if best[1] < 0:
                best = self._longest_short(encoded[i], query[start:stop], anchor - 1)
            spans.append(self._span(i, texts[i], *best))
        lengths = np.array([s.length for s in spans])
        result["longest_span"] = {"max": int(lengths.max()) if len(lengths) else 0,
                                  "mean": float(lengths.mean()) if len(lengths) else 0.0,
                                  "median": float(np.median(lengths)) if len(lengths) else 0.0}
        result["spans"] = [asdict(s) for s in spans]
        return result

    def _longest_short(self, sample: list[int], query: np.ndarray, limit: int) -> tuple[int, int, int]:
        """The longest match of at most ``limit`` units: the largest n whose hash hits verify exactly."""
        for n in range(min(limit, len(sample)), 0, -1):
            hits = np.flatnonzero(self._hits(query, n)[1])
            for j in hits.tolist():
                lo, hi = self._interval(sample[j:j + n])
                if hi > lo:
                    return n, j, self.suffix_array[lo]
        return 0, -1, -1

    def _span(self, index: int, text: str, length: int, start: int, ref_pos: int) -> CopiedSpan:
        if length == 0:
            return CopiedSpan(index, 0, "", 0, None, None, None)
        units = units_with_offsets(text, self.unit)
        quote = text[units[start][1]:units[start + length - 1][2]]
        document = int(np.searchsorted(self.doc_starts, ref_pos, side="right") - 1)
        name = self.names[document] if self.names is not None else None
        return CopiedSpan(index, length, quote, start, document, name, ref_pos - int(self.doc_starts[document]))

"""Exact and near deduplication: normalised-text digests, MinHash LSH for text, perceptual hashes for images.

Near-duplicate text (Broder 1997, "On the resemblance and containment of documents"; LSH banding as in
Leskovec, Rajaraman & Ullman, "Mining of Massive Datasets", ch. 3):

* **Shingles.** A text is normalised (:func:`normalize_for_hash`) and cut into tokens: words for
  space-separated scripts, single characters for Chinese and Japanese (Han, Hiragana, Katakana), which do not
  put spaces between words. A shingle is ``ngram`` consecutive tokens. The default is ``ngram=1`` (the set of
  words) because it is the only word shingling that keeps edits of up to 10 % of the words above Jaccard 0.8:
  one substituted word costs 1 shingle with unigrams but ``n`` with n-grams. Measured on the benchmark corpus
  (``benchmarks/bench_near_dedup.py``: 20-60-word documents, copies with 7-10 % of words substituted,
  deleted or inserted): mean Jaccard 0.90 with unigrams (99.7-100 % of pairs at or above 0.8), 0.76 with
  bigrams (17-21 %), 0.66 with trigrams (2 %); unrelated documents average 0.08 (at most 0.2) with unigrams. The
  price of unigrams is that word order is ignored: a shuffled text is a duplicate. Pass ``ngram=3`` or more
  where order matters more than edit tolerance (and lower the threshold to match).
* **Hashing.** Each token's UTF-8 bytes are read as little-endian 8-byte words, chained with a multiply and
  splitmix64's finaliser, vectorised with numpy over a whole batch. Python's ``hash()`` is salted per
  process, so it is never used: the same texts give the same signatures in any process, on any machine.
* **MinHash.** ``num_perm`` hash functions ``h(x) = ((a*x + b) mod 2**64) >> 32`` (Dietzfelbinger's
  multiply-add-shift, 32-bit keys) drawn from ``seed``; the signature is the minimum of each over the
  shingles, taken with ``np.minimum.reduceat`` over the concatenated shingles of a batch.
* **LSH.** ``b`` bands of ``r`` rows, chosen by datasketch's own optimal-parameter routine for the threshold,
  weighted towards recall (:data:`LSH_WEIGHTS`: 14 bands of 9 rows at 0.8 and 128 permutations). Signatures
  (uint32) go to one file and band hashes (uint64) to one file per band in a work directory; each band is
  read back and sorted once to find its buckets, so memory holds a few arrays of one integer per document,
  never a dict of millions of entries.
* **Verification and clusters.** Members of a bucket are checked against its earliest member by the Jaccard
  estimated from the two signatures (read from an ``np.memmap`` chunk by chunk); those that fail are checked
  among themselves the same way. Pairs at or above the threshold are joined into clusters (connected
  components), and the earliest text of each cluster is kept. Clusters chain: if A~B and B~C, C is dropped
  with B even when C is not within the threshold of A.

Images: a 64-bit pHash (``imagehash.phash``; Zauner 2010) survives re-encoding, resizing and mild noise, but
not crops, rotations or large colour changes. Near pairs are found with multi-index hashing (Norouzi et al.,
"Fast search in Hamming space with multi-index hashing", CVPR 2012): the hash is split into
``max_distance + 1`` chunks and, by the pigeonhole principle, two hashes within that distance agree exactly on
at least one chunk, so only hashes sharing a chunk value are ever compared.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import multiprocessing
import re
import shutil
import sys
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from genchain.data.media import decode_image
from genchain.errors import InputError

_SEPARATORS = re.compile(r"[\W_]+")  # punctuation, symbols and whitespace: all become one space
# The same normalisation for ASCII text as one C-level byte translation: letters lowercased, digits kept,
# everything else a space (NFKC and casefolding change nothing in ASCII but the case).
_ASCII_TABLE = bytes(c + 32 if 65 <= c <= 90 else c if 97 <= c <= 122 or 48 <= c <= 57 else 32 for c in range(256))
# Scripts written without spaces between words: Han (CJK ideographs, extensions A and compatibility), Hiragana,
# Katakana. Hangul is left out on purpose: Korean separates words with spaces.
_CJK_CHAR = re.compile(r"([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef])")

_TOKEN_BASE = np.uint64(0x100000001B3)  # the FNV-1a 64-bit prime, as the multiplier of the polynomial hash
_SHINGLE_BASE = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio, odd
_EMPTY = np.uint32(0xFFFFFFFF)  # the signature of a text without tokens: never bucketed
BATCH_DOCS = 4096  # texts per signature batch: about 50 MB of temporaries for short texts
VERIFY_CHUNK = 65536  # candidate pairs compared at once: 2 x 32 MB of signature rows at 128 permutations
# (false positive, false negative) weights for the band choice. Every candidate pair is verified against the
# threshold afterwards, so a false positive costs one signature comparison while a false negative is a missed
# duplicate: weigh misses 9:1. datasketch's default (0.5, 0.5) gives 9 bands of 13 rows at 0.8, which makes a
# pair at Jaccard 0.85 a candidate only 69 % of the time; 14 bands of 9 rows make it 97 %.
LSH_WEIGHTS = (0.1, 0.9)


def normalize_for_hash(text: str) -> str:
    """The form two texts share when they differ only in case, Unicode width/compatibility forms, punctuation or
    spacing: NFKC, casefolded, punctuation replaced by spaces, runs of whitespace collapsed to one space."""
    if text.isascii():
        return " ".join(text.encode("ascii").translate(_ASCII_TABLE).decode("ascii").split())
    return _SEPARATORS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def text_key(text: str) -> bytes:
    """A 16-byte BLAKE2b digest of :func:`normalize_for_hash`: the exact-duplicate key of a text."""
    return hashlib.blake2b(normalize_for_hash(text).encode("utf-8"), digest_size=16).digest()


class ExactDeduplicator:
    """Remembers the keys it has seen; memory is one 16-byte digest (plus set overhead) per distinct text."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def is_new(self, key: bytes) -> bool:
        """True the first time ``key`` is seen, False every time after."""
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


@dataclass(frozen=True)
class NearDedupConfig:
    """Near-duplicate text detection.

    Attributes:
        threshold: Jaccard similarity of the shingle sets at or above which two texts are near duplicates.
        num_perm: MinHash permutations (signature length); the estimate's standard error is
            ``sqrt(J * (1 - J) / num_perm)``, about 0.035 at J = 0.8 with 128.
        ngram: tokens per shingle (words, or characters for Chinese/Japanese); 1 tolerates the most edits.
        seed: draws the hash functions; the same seed gives the same signatures everywhere.
    """

    threshold: float = 0.8
    num_perm: int = 128
    ngram: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise InputError(f"near-dedup threshold {self.threshold} is outside (0, 1]; use e.g. 0.8")
        if self.num_perm < 2:
            raise InputError(f"num_perm {self.num_perm} is too small; use 128 (or at least 16)")
        if self.ngram < 1:
            raise InputError(f"ngram {self.ngram} must be at least 1")


@functools.lru_cache(maxsize=16)
def lsh_bands(config: NearDedupConfig) -> tuple[int, int]:
    """(bands, rows) for the threshold, from datasketch's optimal-parameter routine, as
    ``datasketch.MinHashLSH(threshold, num_perm, weights=LSH_WEIGHTS)`` chooses them."""
    from datasketch.lsh import _optimal_param

    return _optimal_param(config.threshold, config.num_perm, *LSH_WEIGHTS)


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads every input bit over the whole 64-bit word (in place, wrapping)."""
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def _tokenize(text: str) -> str:
    """The normalised text with every Chinese/Japanese character standing alone as a token."""
    normal = normalize_for_hash(text)
    if not normal.isascii():
        normal = _CJK_CHAR.sub(r" \1 ", normal)
    return normal


def _token_bytes(text: str) -> bytes:
    """UTF-8 of :func:`_tokenize`, where runs of spaces may stand for one (the byte tokenizer skips runs)."""
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_TABLE)
    return _tokenize(text).encode("utf-8")


def shingles(text: str, ngram: int = 1) -> set[str]:
    """The shingle set that the MinHash signature summarises, spelled out (for peers, tests and reports): runs
    of ``ngram`` tokens joined by spaces; a text shorter than ``ngram`` tokens is one shingle."""
    tokens = _tokenize(text).split()
    if not tokens:
        return set()
    return {" ".join(tokens[i:i + ngram]) for i in range(max(len(tokens) - ngram + 1, 1))}


class MinHasher:
    """Batch MinHash signatures of texts; a pure function of the config, so any process computes the same."""

    def __init__(self, config: NearDedupConfig):
        self.config = config
        rng = np.random.default_rng(config.seed)
        self.mul = rng.integers(0, 2**64, size=config.num_perm, dtype=np.uint64) | np.uint64(1)
        self.add = rng.integers(0, 2**64, size=config.num_perm, dtype=np.uint64)

    def shingles(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Shingle hashes of all texts concatenated (uint64, below 2**32) and the count per text."""
        joined = b"\n".join([_token_bytes(text) for text in texts])
        buf = np.frombuffer(joined, dtype=np.uint8)
        is_sep = buf <= 0x20  # tokens are separated by spaces, texts by newlines; no other byte is this low
        # a token starts at a non-separator byte at position 0 or after a separator, and ends before one
        starts = np.flatnonzero(~is_sep & np.concatenate(([True], is_sep[:-1])))
        ends = np.flatnonzero(~is_sep & np.concatenate((is_sep[1:], [True]))) + 1
        tokens_per_doc = np.bincount(np.searchsorted(np.flatnonzero(buf == 0x0A), starts), minlength=len(texts))
        if starts.size == 0:
            return np.zeros(0, np.uint64), tokens_per_doc
        # each token read as little-endian 8-byte words (bytes past its end masked off), chained through a
        # multiply and splitmix64 with its length: one step per 8 bytes of token, not one per byte
        words = np.ndarray((buf.size,), dtype="<u8", buffer=joined + bytes(8), strides=(1,))
        length = ends - starts
        keep_bytes = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [2**64 - 1], np.uint64)
        token_hash = words[starts] & keep_bytes[np.minimum(length, 8)]
        token_hash ^= length.astype(np.uint64) * _SHINGLE_BASE
        long = np.flatnonzero(length > 8)
        for word in range(1, int(length.max() + 7) // 8):
            long = long[length[long] > 8 * word]
            more = words[starts[long] + 8 * word] & keep_bytes[np.minimum(length[long] - 8 * word, 8)]
            token_hash[long] = _mix64(token_hash[long]) * _TOKEN_BASE + more
        _mix64(token_hash)
        return self._ngrams(token_hash, tokens_per_doc)

    def _ngrams(self, token_hash: np.ndarray, tokens_per_doc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = self.config.ngram
        if n == 1:
            shingle = token_hash
            counts = tokens_per_doc
        else:
            # a text shorter than n tokens gives one shingle of all its tokens (the last index is repeated)
            counts = np.where(tokens_per_doc > 0, np.maximum(tokens_per_doc - n + 1, 1), 0)
            doc_first = np.concatenate(([0], np.cumsum(tokens_per_doc)[:-1]))
            doc_last = doc_first + tokens_per_doc - 1
            first = np.repeat(doc_first, counts) + (np.arange(counts.sum()) - np.repeat(
                np.concatenate(([0], np.cumsum(counts)[:-1])), counts))
            last = np.repeat(doc_last, counts)
            shingle = token_hash[first].copy()
            for k in range(1, n):
                shingle *= _SHINGLE_BASE
                shingle += token_hash[np.minimum(first + k, last)]
            _mix64(shingle)
        return (shingle >> np.uint64(32)) ^ (shingle & np.uint64(0xFFFFFFFF)), counts

    def signatures(self, texts: list[str]) -> np.ndarray:
        """(len(texts), num_perm) uint32 MinHash signatures; texts without tokens get all 0xFFFFFFFF."""
        shingle, counts = self.shingles(texts)
        sig = np.full((len(texts), self.config.num_perm), _EMPTY, np.uint32)
        nonempty = counts > 0
        if not nonempty.any():
            return sig
        offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))[nonempty]
        out = np.empty((int(nonempty.sum()), self.config.num_perm), np.uint64)
        value = np.empty_like(shingle)
        for k in range(self.config.num_perm):
            np.multiply(shingle, self.mul[k], out=value)
            value += self.add[k]
            out[:, k] = np.minimum.reduceat(value, offsets)
        sig[nonempty] = out >> np.uint64(32)
        return sig


def band_hashes(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64: one hash per band of ``rows`` signature values; equal bands give equal hashes."""
    out = np.empty((signatures.shape[0], bands), np.uint64)
    for band in range(bands):
        h = np.full(signatures.shape[0], (band + 1) * int(_SHINGLE_BASE) % 2**64, np.uint64)
        for col in signatures[:, band * rows:(band + 1) * rows].T:
            h *= _TOKEN_BASE
            h += col.astype(np.uint64)
            _mix64(h)
        out[:, band] = h
    return out


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """The fraction of equal signature positions, row by row: an unbiased estimate of the Jaccard similarity."""
    return (sig_a == sig_b).mean(axis=-1)


def _batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(texts)
    while batch := list(islice(iterator, size)):
        yield batch


def _signature_job(args: tuple[NearDedupConfig, list[str]]) -> tuple[np.ndarray, np.ndarray]:
    config, texts = args
    sig = MinHasher(config).signatures(texts)
    bands, rows = lsh_bands(config)
    return sig, band_hashes(sig, bands, rows)


def _run_starts(values: np.ndarray) -> np.ndarray:
    """Mask of the entries of a sorted array that differ from the one before (the first entry included)."""
    starts = np.ones(values.size, bool)
    starts[1:] = values[1:] != values[:-1]
    return starts


def _in_groups_of_two_or_more(group: np.ndarray) -> np.ndarray:
    """Mask of the entries of a sorted group-id array whose group has at least two entries."""
    run = np.cumsum(_run_starts(group)) - 1
    return np.bincount(run)[run] > 1


def _bucket_members(band: np.ndarray, nonempty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Members of every bucket (equal band hash) of two or more texts, as (group id, index) sorted by both."""
    index = np.flatnonzero(nonempty)
    order = index[np.argsort(band[index], kind="stable")]
    value = band[order]
    group = np.cumsum(_run_starts(value))
    keep = _in_groups_of_two_or_more(group)
    return group[keep], order[keep]


def _verified_pairs(signatures: _SignatureFile, group: np.ndarray, member: np.ndarray,
                    threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs within buckets whose estimated Jaccard reaches the threshold.

    Each member is compared with its bucket's earliest member; those that fail form smaller buckets of their own
    and are compared with the earliest of those, until no bucket of two is left. Exact-duplicate buckets cost
    one pass; chance collisions (rare at the chosen band width) cost a few more.
    """
    found_a, found_b = [], []
    while group.size:
        is_first = _run_starts(group)
        center = member[is_first][np.cumsum(is_first) - 1]
        rest = ~is_first
        a, b, g = center[rest], member[rest], group[rest]
        ok = np.empty(a.size, bool)
        for lo in range(0, a.size, VERIFY_CHUNK):
            chunk = slice(lo, lo + VERIFY_CHUNK)
            ok[chunk] = estimated_jaccard(signatures.rows(a[chunk]), signatures.rows(b[chunk])) >= threshold
        found_a.append(a[ok])
        found_b.append(b[ok])
        group, member = g[~ok], b[~ok]
        keep = _in_groups_of_two_or_more(group)
        group, member = group[keep], member[keep]
    return np.concatenate(found_a or [np.zeros(0, np.int64)]), np.concatenate(found_b or [np.zeros(0, np.int64)])


def find_near_duplicates(texts: Iterable[str], config: NearDedupConfig = NearDedupConfig(), *,
                         workdir: Path | None = None, progress: bool = True, workers: int = 1) -> np.ndarray:
    """Flags texts that are near duplicates of an earlier text (keeping the first of each cluster).

    Texts are read once, in batches; signatures and band hashes go to files in ``workdir`` (a temporary
    directory, removed afterwards, when None), so memory holds one batch plus a few integers per text.
    Texts without any word (empty or only punctuation) are never flagged here: exact dedup handles them.

    Args:
        texts: the texts, in dataset order; any iterable, consumed once.
        config: threshold, signature length, shingle size and seed.
        workdir: where the signature files go; created if absent, and the files are removed at the end.
        progress: show a tqdm bar on stderr.
        workers: processes that compute signatures (the result does not depend on it).

    Returns:
        A bool array in input order: True where the text is a near duplicate of an earlier one.
    """
    from tqdm import tqdm

    bands, rows = lsh_bands(config)
    owned = workdir is None
    root = Path(tempfile.mkdtemp(prefix="genchain-dedup-")) if owned else Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    sig_path = root / "signatures.u32"
    band_paths = [root / f"band{band:02d}.u64" for band in range(bands)]
    try:
        nonempty_parts = []
        with contextlib.ExitStack() as stack:
            sig_file = stack.enter_context(open(sig_path, "wb"))
            band_files = [stack.enter_context(open(path, "wb")) for path in band_paths]
            bar = stack.enter_context(tqdm(desc="near-dedup signatures", unit=" texts", disable=not progress,
                                           file=sys.stderr))
            jobs = ((config, batch) for batch in _batches(texts, BATCH_DOCS))
            if workers > 1:
                pool = stack.enter_context(multiprocessing.get_context("fork").Pool(workers))
                results = pool.imap(_signature_job, jobs)
            else:
                results = map(_signature_job, jobs)
            for sig, band_hash in results:
                sig_file.write(sig.tobytes())
                for band, band_file in enumerate(band_files):
                    band_file.write(band_hash[:, band].tobytes())
                nonempty_parts.append(sig[:, 0] != _EMPTY)
                bar.update(sig.shape[0])
        nonempty = np.concatenate(nonempty_parts or [np.zeros(0, bool)])
        n = nonempty.size
        if n == 0:
            return np.zeros(0, bool)
        signatures = _SignatureFile(sig_path, n, config.num_perm)
        pair_a, pair_b = [], []
        for path in tqdm(band_paths, desc="near-dedup buckets", disable=not progress, file=sys.stderr):
            group, member = _bucket_members(np.fromfile(path, dtype=np.uint64), nonempty)
            a, b = _verified_pairs(signatures, group, member, config.threshold)
            pair_a.append(a)
            pair_b.append(b)
        a, b = np.concatenate(pair_a), np.concatenate(pair_b)
        graph = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(n, n))
        _, label = connected_components(graph, directed=False)
        _, first_of_label = np.unique(label, return_index=True)
        return first_of_label[label] != np.arange(n)
    finally:
        if owned:
            shutil.rmtree(root, ignore_errors=True)
        else:
            for path in [sig_path, *band_paths]:
                path.unlink(missing_ok=True)


class _SignatureFile:
    """Rows of the signature file on demand, through a memory map opened per chunk of pairs. The pages it touches
    are clean file pages (counted in RSS while mapped, but the kernel can drop them at any time); the process's
    own (anonymous) memory stays at a few integers per text."""

    def __init__(self, path: Path, n: int, num_perm: int):
        self.path, self.shape = path, (n, num_perm)

    def rows(self, index: np.ndarray) -> np.ndarray:
        mapped = np.memmap(self.path, dtype=np.uint32, mode="r", shape=self.shape)
        chunk = mapped[index]
        del mapped
        return chunk


def image_phash(image_png_bytes: bytes) -> int:
    """The 64-bit perceptual hash (``imagehash.phash``: the signs of the low 8x8 DCT of a 32x32 greyscale copy)
    of an encoded image (PNG, or any format Pillow reads); bit 63 is the hash's first bit.

    Raises:
        InputError: the bytes are not a readable image (the caller counts and skips it).
    """
    import imagehash

    bits = imagehash.phash(decode_image(image_png_bytes)).hash.flatten()
    return int("".join("1" if bit else "0" for bit in bits), 2)


def find_image_near_duplicates(hashes: Iterable[int], max_distance: int = 4) -> np.ndarray:
    """Flags images whose pHash is within ``max_distance`` bits of an earlier image's (0 = exact duplicates).

    Multi-index hashing: identical hashes are merged first, then the distinct hashes are split into
    ``max_distance + 1`` chunks; only hashes equal on some chunk are compared, which by the pigeonhole principle
    finds every pair within the distance without comparing all pairs.

    Returns:
        A bool array in input order: True where some earlier image is within ``max_distance``.
    """
    if not 0 <= max_distance < 64:
        raise InputError(f"max_distance {max_distance} must be between 0 and 63 bits")
    values = np.fromiter((int(h) & 0xFFFFFFFFFFFFFFFF for h in hashes), dtype=np.uint64)
    n = values.size
    if n == 0:
        return np.zeros(0, bool)
    distinct, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    flagged = first[inverse] != np.arange(n)  # a repeat of an earlier identical hash
    # earliest index among the distinct hashes within the distance of each distinct hash (itself included)
    earliest_near = first.copy()
    chunk_bits = np.diff(np.linspace(0, 64, max_distance + 2).astype(np.int64))
    shift = 0
    for bits in chunk_bits:
        chunk = (distinct >> np.uint64(shift)) & np.uint64((1 << int(bits)) - 1)
        shift += int(bits)
        order = np.argsort(chunk, kind="stable")
        sorted_chunk = chunk[order]
        offset = 1
        while offset < order.size:
            same = sorted_chunk[offset:] == sorted_chunk[:-offset]
            if not same.any():
                break
            i, j = order[:-offset][same], order[offset:][same]
            near = np.bitwise_count(distinct[i] ^ distinct[j]) <= max_distance
            i, j = i[near], j[near]
            np.minimum.at(earliest_near, i, first[j])
            np.minimum.at(earliest_near, j, first[i])
            offset += 1
    return flagged | (earliest_near[inverse] < first[inverse])

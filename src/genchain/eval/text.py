"""Text metrics: pure functions of a list of samples (and their embeddings), each defined with its source.

Every n-gram metric counts *units*: words for space-separated languages, single characters for Chinese and
Japanese (no spaces to split on). :func:`detect_unit` picks one from the texts, and ``--unit`` overrides it. A
word is a run of letters/digits, and each punctuation mark is a unit of its own (``\\w+|[^\\w\\s]``); case is
kept. Characters mean every non-space character.

* distinct-n (Li et al. 2016, "A Diversity-Promoting Objective Function for Neural Conversation Models"):
  unique n-grams / total n-grams, pooled over all samples. Higher is more diverse.
* self-BLEU (Zhu et al. 2018, "Texygen"): the mean over samples of the sentence BLEU of each sample against all
  the *other* samples as references, computed with sacrebleu's BLEU (4-gram, "exp" smoothing, effective order,
  13a tokenisation for words, per-character for CJK), scaled to [0, 1]. Higher means samples resemble each other.
* repetition (Welleck et al. 2020, "Neural Text Generation with Unlikelihood Training", seq-rep-n): per sample,
  1 - unique 4-grams / total 4-grams; we report the mean over samples and the share of samples that repeat any
  4-gram at all. 0 means no 4-gram ever repeats inside a sample.
* semantic similarity: the mean cosine over all distinct pairs of sentence embeddings (all-MiniLM-L6-v2); we
  report it and "semantic diversity" = 1 - that mean. Identical texts give cosine 1, diversity 0.
* MAUVE (Pillutla et al. 2021) with the reference implementation (`mauve-text`) on those same embeddings
  instead of GPT-2-large features (not available offline here; every result says which features it used).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from genchain.errors import InputError

UNITS = ("auto", "word", "char")
_WORD = re.compile(r"\w+|[^\w\s]")
_NON_SPACE = re.compile(r"\S")
# Han ideographs (with extensions A and the compatibility block), kana: scripts written without spaces.
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def detect_unit(texts: Sequence[str]) -> str:
    """``char`` when at least a third of the non-space characters are Chinese or Japanese, else ``word``."""
    sample = "".join(texts[:200])
    non_space = len(_NON_SPACE.findall(sample))
    if non_space and len(_CJK.findall(sample)) / non_space >= 1 / 3:
        return "char"
    return "word"


def resolve_unit(unit: str, texts: Sequence[str]) -> str:
    if unit not in UNITS:
        raise InputError(f"unknown unit {unit!r}; use one of {', '.join(UNITS)}")
    return detect_unit(texts) if unit == "auto" else unit


def units_with_offsets(text: str, unit: str) -> list[tuple[str, int, int]]:
    """The units of ``text`` with their character span ``(unit, start, end)``, so a match can be quoted."""
    pattern = _WORD if unit == "word" else _NON_SPACE
    return [(m.group(), m.start(), m.end()) for m in pattern.finditer(text)]


def tokenize(text: str, unit: str) -> list[str]:
    """The units of ``text`` (``word`` or ``char``, see the module docstring)."""
    return (_WORD if unit == "word" else _NON_SPACE).findall(text)


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(token_lists: Sequence[Sequence[str]], n: int) -> float:
    """Unique n-grams / total n-grams over all samples (Li et al. 2016); 0 when no sample has n units."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for tokens in token_lists:
        grams = ngrams(tokens, n)
        seen.update(grams)
        total += len(grams)
    return len(seen) / total if total else 0.0


def repetition(token_lists: Sequence[Sequence[str]], n: int = 4) -> dict[str, float]:
    """seq-rep-n (Welleck et al. 2020): mean over samples of 1 - unique/total n-grams within the sample, and the
    share of samples with any repeated n-gram. Samples shorter than n count as no repetition."""
    rates = []
    for tokens in token_lists:
        grams = ngrams(tokens, n)
        rates.append(1.0 - len(set(grams)) / len(grams) if grams else 0.0)
    if not rates:
        return {f"seq_rep_{n}": 0.0, f"samples_repeating_{n}gram": 0.0}
    return {f"seq_rep_{n}": float(np.mean(rates)), f"samples_repeating_{n}gram": float(np.mean(np.array(rates) > 0))}


def self_bleu(texts: Sequence[str], unit: str = "word", max_order: int = 4) -> float:
    """Mean sentence BLEU of each text against all the others (Texygen's self-BLEU), in [0, 1].

    Exactly ``mean(sacrebleu.BLEU(effective_order=True).sentence_score(t_i, others_i).score) / 100`` (a test
    checks), but in time linear in the corpus: sacrebleu clips a hypothesis n-gram count by the largest count
    in any one reference, so keeping the two largest counts of each n-gram, and which sample holds the first,
    gives every "all the others" maximum without building 1,000 reference sets of 999 texts. The closest
    reference length (ties to the shorter, as sacrebleu does) comes from the sorted lengths less the sample's.
    """
    from sacrebleu.metrics.bleu import BLEU
    from sacrebleu.metrics.helpers import extract_all_word_ngrams

    if len(texts) < 2:
        return 0.0
    bleu = BLEU(tokenize="char" if unit == "char" else "13a", effective_order=True, max_ngram_order=max_order)
    counts: list[Counter] = []
    lengths: list[int] = []
    for text in texts:
        grams, length = extract_all_word_ngrams(bleu.tokenizer(text.rstrip()), 1, max_order)
        counts.append(grams)
        lengths.append(length)
    top: dict[tuple[str, ...], list[int]] = {}  # n-gram -> [largest count, its sample, second largest count]
    for i, grams in enumerate(counts):
        for gram, count in grams.items():
            entry = top.get(gram)
            if entry is None:
                top[gram] = [count, i, 0]
            elif count > entry[0]:
                entry[2], entry[0], entry[1] = entry[0], count, i
            elif count > entry[2]:
                entry[2] = count
    sorted_lengths = np.sort(np.array(lengths))
    scores = []
    for i, grams in enumerate(counts):
        correct = [0] * max_order
        total = [0] * max_order
        for gram, count in grams.items():
            first, holder, second = top[gram]
            total[len(gram) - 1] += count
            correct[len(gram) - 1] += min(count, second if holder == i else first)
        ref_len = _closest_other_length(sorted_lengths, lengths[i])
        scores.append(BLEU.compute_bleu(correct, total, lengths[i], ref_len, smooth_method="exp",
                                        effective_order=True, max_ngram_order=max_order).score)
    return float(np.mean(scores)) / 100.0


def _closest_other_length(sorted_lengths: np.ndarray, own: int) -> int:
    """sacrebleu's closest reference length (smallest |diff|, ties to the shorter) among all lengths but one
    copy of ``own``."""
    at = int(np.searchsorted(sorted_lengths, own))
    others = np.delete(sorted_lengths, at)  # sorted_lengths[at] == own: drop the sample itself
    at = int(np.searchsorted(others, own))
    candidates = [int(others[j]) for j in (at - 1, at) if 0 <= j < len(others)]
    return min(candidates, key=lambda length: (abs(own - length), length))


def mean_pairwise_cosine(embeddings: np.ndarray) -> float:
    """Mean cosine over all pairs i < j of unit-length rows, in O(n d): (|sum|^2 - n) / (n (n - 1))."""
    n = len(embeddings)
    if n < 2:
        return 1.0
    vectors = embeddings.astype(np.float64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
    total = vectors.sum(axis=0)
    return float((total @ total - n) / (n * (n - 1)))


def mauve_score(p_features: np.ndarray, q_features: np.ndarray, seed: int = 25) -> float:
    """MAUVE between the generated (``p``) and reference (``q``) feature sets, with mauve-text's defaults
    (k-means on PCA-reduced features into n/10 buckets, scaling factor 5). ~1: indistinguishable, ~0: disjoint."""
    import mauve

    if len(p_features) < 2 or len(q_features) < 2:
        raise InputError("MAUVE needs at least 2 generated and 2 reference texts")
    result = mauve.compute_mauve(p_features=np.asarray(p_features, dtype=np.float32),
                                 q_features=np.asarray(q_features, dtype=np.float32), seed=seed, verbose=False)
    return float(result.mauve)


def length_stats(lengths: Sequence[int]) -> dict[str, float]:
    """Mean, median, min and max length (in units)."""
    if not lengths:
        return {"mean": 0.0, "median": 0.0, "min": 0, "max": 0}
    array = np.asarray(lengths)
    return {"mean": float(array.mean()), "median": float(np.median(array)), "min": int(array.min()),
            "max": int(array.max())}


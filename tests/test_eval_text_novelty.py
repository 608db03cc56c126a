"""Novelty (genchain.eval.novelty): copied n-gram shares and the exact longest copied span."""

from __future__ import annotations

import random

import numpy as np
import pytest

from genchain.eval import novelty
from genchain.eval.novelty import ReferenceIndex


def _corpus(seed: int = 1, docs: int = 30, words: int = 200) -> list[str]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(60)]
    return [" ".join(rng.choice(vocab) for _ in range(words)) for _ in range(docs)]


def _brute_longest(sample: list[str], documents: list[list[str]]) -> int:
    best = 0
    for doc in documents:
        for i in range(len(sample)):
            for j in range(len(doc)):
                k = 0
                while i + k < len(sample) and j + k < len(doc) and sample[i + k] == doc[j + k]:
                    k += 1
                best = max(best, k)
    return best


def test_copy_of_17_tokens_then_divergence_gives_17_and_where():
    docs = _corpus()
    index = ReferenceIndex(docs, "word", names=[f"doc{i}" for i in range(len(docs))])
    copied = docs[3].split()[10:27]
    sample = " ".join(["fresh1", "fresh2", *copied, "fresh3", "fresh4"])
    result = index.check([sample])
    span = result["spans"][0]
    assert span["length"] == 17
    assert span["text"] == " ".join(copied)
    assert (span["start"], span["document"], span["document_name"]) == (2, 3, "doc3")
    assert docs[3].split()[span["offset"]:span["offset"] + 17] == copied
    # 21 units -> 14 eight-grams, of which the 10 inside the copy are found; 13-grams: 9, of which 5
    assert result["orders"]["8"] == {"ngrams": 14, "found": 10, "copied_share": 10 / 14, "samples_with_copy": 1.0}
    assert result["orders"]["13"]["found"] == 5 and result["orders"]["13"]["ngrams"] == 9
    assert result["longest_span"]["max"] == 17


def test_unseen_words_are_zero_percent_copied():
    index = ReferenceIndex(_corpus(), "word")
    result = index.check(["nothing here was ever in that corpus at all , not one word of it today"] * 3)
    for order in ("8", "13"):
        assert result["orders"][order]["found"] == 0
        assert result["orders"][order]["copied_share"] == 0.0
        assert result["orders"][order]["samples_with_copy"] == 0.0
    assert [s["length"] for s in result["spans"]] == [0, 0, 0]


def test_longest_span_matches_brute_force_and_never_crosses_documents():
    docs = _corpus(seed=2, docs=12, words=120)
    rng = random.Random(5)
    vocab = [f"w{i}" for i in range(60)]
    samples = []
    for _ in range(25):
        doc = rng.choice(docs).split()
        start, length = rng.randint(0, 100), rng.randint(0, 30)
        noise = lambda: [rng.choice(vocab) for _ in range(rng.randint(0, 8))]
        samples.append(" ".join(noise() + doc[start:start + length] + noise()))
    # the end of document 0 followed by the start of document 1 is not one copied span
    samples.append(" ".join(docs[0].split()[-6:] + docs[1].split()[:6]))
    spans = ReferenceIndex(docs, "word").check(samples)["spans"]
    split_docs = [d.split() for d in docs]
    assert [s["length"] for s in spans] == [_brute_longest(s.split(), split_docs) for s in samples]
    assert spans[-1]["length"] < 12


def test_hash_collisions_cannot_fake_a_copy(monkeypatch):
    """With a hash that maps every n-gram to the same value, every window 'hits'; the spans stay exact."""
    monkeypatch.setattr(novelty, "_mix", lambda ids: np.zeros(len(ids), dtype=np.uint64))
    docs = _corpus(seed=4, docs=5, words=80)
    index = ReferenceIndex(docs, "word")
    copied = docs[2].split()[5:14]  # 9 units
    samples = [" ".join(["x1", *copied, "x2"]), "w1 zz w2 yy w3 qq w4 pp w5 oo w6 nn w7"]
    spans = index.check(samples)["spans"]
    assert spans[0]["length"] == 9 and spans[0]["text"] == " ".join(copied)
    assert spans[1]["length"] == _brute_longest(samples[1].split(), [d.split() for d in docs]) == 1


def test_characters_for_chinese():
    poems = ["床前明月光，疑是地上霜。举头望明月，低头思故乡。", "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。"]
    index = ReferenceIndex(poems, "char")
    spans = index.check(["我说举头望明月，低头思故乡。好", "完全没有见过的句子"])["spans"]
    assert spans[0]["length"] == 12 and spans[0]["text"] == "举头望明月，低头思故乡。"
    assert spans[1]["length"] == 0


def test_empty_reference_is_an_input_error():
    from genchain.errors import InputError

    with pytest.raises(InputError, match="empty"):
        ReferenceIndex([], "word")
    with pytest.raises(InputError, match="no words"):
        ReferenceIndex(["   ", "\n"], "word")

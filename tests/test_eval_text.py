"""Text metrics on cases with known answers (genchain.eval.text)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from genchain.eval import text as metrics


def test_tokenize_words_punctuation_and_cjk_characters():
    assert metrics.tokenize("Hello, world!  It's", "word") == ["Hello", ",", "world", "!", "It", "'", "s"]
    assert metrics.tokenize("床前 明月光。", "char") == ["床", "前", "明", "月", "光", "。"]
    assert metrics.detect_unit(["床前明月光，疑是地上霜。"]) == "char"
    assert metrics.detect_unit(["the cat sat on the mat", "它"]) == "word"
    assert metrics.resolve_unit("auto", ["举头望明月"]) == "char"


def test_distinct_n_known_counts():
    tokens = [["a", "b", "a", "b"], ["a", "b", "c"]]
    # unigrams: a b a b a b c -> 3 unique / 7; bigrams: ab ba ab ab bc -> 3 unique / 5
    assert metrics.distinct_n(tokens, 1) == pytest.approx(3 / 7)
    assert metrics.distinct_n(tokens, 2) == pytest.approx(3 / 5)
    assert metrics.distinct_n(tokens, 3) == pytest.approx(3 / 3)  # aba bab abc
    assert metrics.distinct_n([["x"]] * 10, 1) == pytest.approx(0.1)
    assert metrics.distinct_n([["x"]], 2) == 0.0


def test_repetition_seq_rep_4():
    looping = "a b c d a b c d a b c d".split()  # 9 four-grams, 4 unique
    fresh = "one two three four five six".split()
    result = metrics.repetition([looping, fresh], 4)
    assert result["seq_rep_4"] == pytest.approx(((1 - 4 / 9) + 0.0) / 2)
    assert result["samples_repeating_4gram"] == pytest.approx(0.5)


def test_self_bleu_equals_sacrebleu_each_against_the_others():
    from sacrebleu.metrics.bleu import BLEU

    rng = random.Random(3)
    words = "the cat dog sat on mat a rose sea moon king ship calls finds , .".split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 30))) for _ in range(30)]
    bleu = BLEU(effective_order=True)
    expected = np.mean([bleu.sentence_score(t, texts[:i] + texts[i + 1:]).score for i, t in enumerate(texts)])
    assert metrics.self_bleu(texts, "word") == pytest.approx(expected / 100, abs=1e-12)
    poems = ["床前明月光疑是地上霜", "举头望明月低头思故乡", "春眠不觉晓处处闻啼鸟", "夜来风雨声花落知多少"]
    bleu = BLEU(effective_order=True, tokenize="char")
    expected = np.mean([bleu.sentence_score(t, poems[:i] + poems[i + 1:]).score for i, t in enumerate(poems)])
    assert metrics.self_bleu(poems, "char") == pytest.approx(expected / 100, abs=1e-12)


def test_self_bleu_identical_is_one_disjoint_is_zero():
    assert metrics.self_bleu(["the same sentence here ."] * 5) == pytest.approx(1.0)
    assert metrics.self_bleu(["alpha beta gamma", "delta epsilon zeta", "eta theta iota"]) == 0.0


def test_mean_pairwise_cosine():
    same = np.tile(np.array([[0.6, 0.8]]), (5, 1))
    assert metrics.mean_pairwise_cosine(same) == pytest.approx(1.0)
    assert metrics.mean_pairwise_cosine(np.eye(4)) == pytest.approx(0.0)
    opposite = np.array([[1.0, 0.0], [-1.0, 0.0]])
    assert metrics.mean_pairwise_cosine(opposite) == pytest.approx(-1.0)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(7, 3))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    brute = np.mean([unit[i] @ unit[j] for i in range(7) for j in range(7) if i < j])
    assert metrics.mean_pairwise_cosine(vectors) == pytest.approx(brute)


def _topic(seed: int, subjects: list[str], verbs: list[str], objects: list[str], n: int) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}." for _ in range(n)]


@pytest.mark.slow
def test_mauve_identical_near_one_disjoint_topics_near_zero_with_minilm():
    from genchain.data.embed import default_embedder

    cooking = _topic(0, ["The chef", "My grandmother", "The baker", "A cook"],
                     ["slowly stirs", "carefully seasons", "bakes", "fries"],
                     ["the tomato soup", "fresh bread with garlic", "a pot of rice", "onions in butter",
                      "the chocolate cake"], 60)
    football = _topic(1, ["The striker", "The goalkeeper", "Our captain", "The referee"],
                      ["scores against", "blocks a shot from", "argues with", "tackles"],
                      ["the opposing defender", "the rival team", "the fans in the stadium", "a midfielder",
                       "the league champions"], 60)
    embedder = default_embedder()
    cook, foot = embedder.embed(cooking), embedder.embed(football)
    assert metrics.mauve_score(cook, cook) == pytest.approx(1.0, abs=1e-6)
    assert metrics.mauve_score(cook, foot) < 0.1
    assert metrics.mean_pairwise_cosine(embedder.embed(["the same line"] * 4)) == pytest.approx(1.0, abs=1e-5)

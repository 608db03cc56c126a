"""Bradley-Terry and Elo on cases with known answers: exact MLEs, synthetic strengths, ties, bootstrap seeds."""

import math
import random

import numpy as np
import pytest

from genchain.eval import bradley_terry as bt


def repeat(first: str, second: str, outcome: float, times: int) -> list[tuple[str, str, float]]:
    return [(first, second, outcome)] * times


def test_thirty_wins_ten_losses_is_three_to_one():
    results = repeat("A", "B", 1.0, 30) + repeat("A", "B", 0.0, 10)
    random.Random(0).shuffle(results)
    board = bt.rank(["A", "B"], results, rounds=0, prior=0.0)
    assert board.pairwise["A"]["B"] == pytest.approx(0.75, abs=1e-9)
    assert board.pairwise["B"]["A"] == pytest.approx(0.25, abs=1e-9)
    a, b = board.ratings
    assert (a.name, b.name) == ("A", "B")
    assert a.score - b.score == pytest.approx(400 * math.log10(3), abs=1e-6)  # 3:1 odds on the Elo scale
    assert (a.score + b.score) / 2 == pytest.approx(1000)
    assert a.win_prob == pytest.approx(0.75, abs=1e-9)
    assert (a.wins, a.losses, a.ties, a.comparisons) == (30, 10, 0, 40)
    # the default prior moves it by a negligible amount
    default = bt.rank(["A", "B"], results, rounds=0)
    assert default.pairwise["A"]["B"] == pytest.approx(0.75, abs=1e-3)
    assert default.pairwise["A"]["B"] < 0.75


def test_three_generators_exact_mle():
    # A:B 2:1 odds, B:C 2:1 odds, A:C 4:1 odds are consistent with strengths 4, 2, 1: the MLE reproduces them.
    results = (repeat("A", "B", 1.0, 200) + repeat("A", "B", 0.0, 100) + repeat("B", "C", 1.0, 200)
               + repeat("B", "C", 0.0, 100) + repeat("A", "C", 1.0, 400) + repeat("A", "C", 0.0, 100))
    board = bt.rank(["A", "B", "C"], results, rounds=0, prior=0.0)
    assert board.pairwise["A"]["B"] == pytest.approx(2 / 3, abs=1e-9)
    assert board.pairwise["A"]["C"] == pytest.approx(4 / 5, abs=1e-9)
    scores = {r.name: r.score for r in board.ratings}
    assert scores["A"] - scores["B"] == pytest.approx(400 * math.log10(2), abs=1e-6)
    assert scores["B"] == pytest.approx(1000, abs=1e-6)  # strengths 4, 2, 1: B is the geometric mean
    assert next(r for r in board.ratings if r.name == "A").win_prob == pytest.approx((2 / 3 + 4 / 5) / 2, abs=1e-9)


def test_win_probabilities_known_answer():
    theta = np.log(np.array([3.0, 1.0, 1.0]))
    # against the others: 3/(3+1) twice; 1/(1+3) and 1/2
    assert bt.win_probabilities(theta) == pytest.approx([0.75, 0.375, 0.375])


def test_synthetic_strengths_are_recovered_inside_their_intervals():
    rng = np.random.default_rng(0)  # one fixed draw; test_interval_coverage checks that passing is not luck
    names = ["e", "d", "c", "b", "a"]
    theta = np.array([1.6, 0.9, 0.3, -0.4, -1.2])  # the true order is the list order
    results = []
    for _ in range(4000):
        i, j = rng.choice(5, size=2, replace=False)
        p = 1.0 / (1.0 + math.exp(theta[j] - theta[i]))
        results.append((names[i], names[j], float(rng.random() < p)))
    board = bt.rank(names, results, rounds=300, seed=1)
    assert [r.name for r in board.ratings] == names
    true_points, true_wins = bt.points(theta), bt.win_probabilities(theta)
    for r in board.ratings:
        i = names.index(r.name)
        assert r.score_ci[0] < true_points[i] < r.score_ci[1], r
        assert r.win_prob_ci[0] < true_wins[i] < r.win_prob_ci[1], r
        assert r.score_ci[1] - r.score_ci[0] < 80  # thousands of comparisons pin each score to tens of points


def test_interval_coverage_is_near_nominal():
    # Over many synthetic data sets a 90 % interval should hold the truth about 90 % of the time.
    theta = np.array([0.8, 0.0, -0.8])
    true_points = bt.points(theta)
    hits = total = 0
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        pairs = rng.permuted(np.tile([0, 1, 2], (300, 1)), axis=1)[:, :2]
        won = rng.random(300) < 1.0 / (1.0 + np.exp(theta[pairs[:, 1]] - theta[pairs[:, 0]]))
        results = [("abc"[i], "abc"[j], float(w)) for (i, j), w in zip(pairs, won, strict=True)]
        board = bt.rank(["a", "b", "c"], results, rounds=100, seed=seed, confidence=0.9)
        for r in board.ratings:
            hits += r.score_ci[0] < true_points["abc".index(r.name)] < r.score_ci[1]
            total += 1
    assert 0.8 <= hits / total <= 0.98, hits / total


def test_ties_count_half_a_win():
    everything_tied = repeat("A", "B", 0.5, 20) + repeat("B", "C", 0.5, 20)
    board = bt.rank(["A", "B", "C"], everything_tied, rounds=50)
    assert [r.score for r in board.ratings] == pytest.approx([1000, 1000, 1000], abs=1e-6)
    assert board.pairwise["A"]["C"] == pytest.approx(0.5)
    assert board.ties == 40 and board.ratings[0].ties in (20, 40)
    # 10 wins + 20 ties (= 10 more wins each) is 20 : 10, so P(A beats B) = 2/3
    mixed = repeat("A", "B", 1.0, 10) + repeat("B", "A", 0.5, 20)
    board = bt.rank(["A", "B"], mixed, rounds=0, prior=0.0)
    assert board.pairwise["A"]["B"] == pytest.approx(2 / 3, abs=1e-9)
    assert (board.ratings[0].wins, board.ratings[0].losses, board.ratings[0].ties) == (10, 0, 20)


def test_a_generator_that_never_loses_stays_finite():
    board = bt.rank(["A", "B"], repeat("A", "B", 1.0, 40), rounds=100, seed=0)
    a, b = board.ratings
    assert a.name == "A" and math.isfinite(a.score) and math.isfinite(b.score)
    assert 0.99 < board.pairwise["A"]["B"] < 1.0
    assert all(math.isfinite(x) for x in a.score_ci + b.score_ci)


def test_bootstrap_is_reproducible_with_its_seed():
    rng = random.Random(3)
    results = [(rng.choice("AB"), "C", rng.choice([0.0, 0.5, 1.0, 1.0])) for _ in range(60)]
    first = bt.rank(["A", "B", "C"], results, rounds=200, seed=5)
    again = bt.rank(["A", "B", "C"], results, rounds=200, seed=5)
    other = bt.rank(["A", "B", "C"], results, rounds=200, seed=6)
    assert first.ratings == again.ratings
    assert [r.score_ci for r in first.ratings] != [r.score_ci for r in other.ratings]
    assert [r.score for r in first.ratings] == [r.score for r in other.ratings]  # the fit itself has no seed


def test_a_generator_without_comparisons_sits_at_the_anchor():
    board = bt.rank(["A", "B", "lonely"], repeat("A", "B", 1.0, 5) + repeat("A", "B", 0.0, 5), rounds=0)
    assert {r.name: round(r.score, 6) for r in board.ratings} == {"A": 1000, "B": 1000, "lonely": 1000}


def test_online_elo_known_updates():
    pairs = np.array([[0, 1]])
    assert bt.online_elo(2, pairs, np.array([1.0])) == pytest.approx([1016, 984])  # equal start, K=32
    assert bt.online_elo(2, pairs, np.array([0.5])) == pytest.approx([1000, 1000])
    # after A won once (1016 vs 984) A is expected to win with 1/(1+10^(-32/400)): a second win gains less
    expected = 1 / (1 + 10 ** (-32 / 400))
    two = bt.online_elo(2, np.array([[0, 1], [0, 1]]), np.array([1.0, 1.0]))
    assert two[0] == pytest.approx(1016 + 32 * (1 - expected))
    assert two.sum() == pytest.approx(2000)  # Elo moves points, it never creates them


def test_json_document_round_trips():
    import json

    board = bt.rank(["A", "B"], repeat("A", "B", 1.0, 3) + repeat("A", "B", 0.0, 1), rounds=20, seed=2)
    document = json.loads(json.dumps(board.to_json()))
    assert [g["name"] for g in document["generators"]] == ["A", "B"]
    assert document["comparisons"] == 4 and document["bootstrap"] == 20 and document["seed"] == 2
    assert document["pairwise"]["A"]["B"] == pytest.approx(board.pairwise["A"]["B"])

"""Ratings from pairwise judgements: the Bradley-Terry model with bootstrap intervals, and an online Elo beside it.

Bradley-Terry (Bradley & Terry 1952; fitting as in Hunter 2004, "MM algorithms for generalized Bradley-Terry
models") gives each generator a log-strength ``theta`` with ``P(i beats j) = sigmoid(theta_i - theta_j)``. We fit
it by Newton's method on the log-likelihood (a handful of steps; the MM iteration needs thousands when strengths
differ a lot, and the bootstrap refits a thousand times).

* **Ties count as half a win for each side** (the tie rows are split into two half-weight wins), not Davidson's
  extra tie parameter: ratings then depend only on the win share, and all-tie data gives equal ratings.
* **Prior**: a Gaussian ``N(0, 1/prior)`` on each ``theta`` (a ridge of ``prior/2 * sum(theta**2)``). The default
  0.01 is a standard deviation of 10 natural-log units (about 4,300 points): negligible against real data, but it
  keeps a generator that never lost finite and ranks generators no comparison connects.
* **Scale**: Elo-style points, ``1000 + 400 * log10(e) * (theta - mean(theta))``: the field's average is 1000 and a
  400-point gap means 10:1 odds. ``win_prob`` is the chance of beating an opponent drawn uniformly from the others.
* **Intervals**: a seeded bootstrap over comparisons (resampling all of them with replacement, via one multinomial
  draw over the distinct outcomes) and percentile intervals of each refit's scores and win probabilities.
* **Online Elo** (K = 32 by default, start 1000) replays the judgements in the order they were made; it depends on
  that order and is shown only to compare with the order-free Bradley-Terry fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ELO_SCALE = 400.0 / math.log(10.0)  # points per natural-log unit of strength
ANCHOR = 1000.0


@dataclass(frozen=True)
class Rating:
    """One generator's place on the leaderboard; intervals are bootstrap percentiles (None without a bootstrap)."""

    name: str
    score: float
    score_ci: tuple[float, float] | None
    win_prob: float
    win_prob_ci: tuple[float, float] | None
    elo: float
    comparisons: int
    wins: int
    losses: int
    ties: int


@dataclass(frozen=True)
class Leaderboard:
    ratings: list[Rating]  # best first
    pairwise: dict[str, dict[str, float]]  # pairwise[a][b] = P(a beats b)
    comparisons: int
    ties: int
    bootstrap: int
    confidence: float
    seed: int
    prior: float

    def to_json(self) -> dict:
        return {"method": "bradley-terry (ties count half a win each; Newton MLE with a Gaussian prior); "
                          "bootstrap percentile intervals; online Elo for comparison",
                "scale": f"points = {ANCHOR:g} + 400*log10(strength / geometric mean strength)",
                "comparisons": self.comparisons, "ties": self.ties, "bootstrap": self.bootstrap,
                "confidence": self.confidence, "seed": self.seed, "prior": self.prior,
                "generators": [{"name": r.name, "score": r.score, "score_ci": r.score_ci, "win_prob": r.win_prob,
                                "win_prob_ci": r.win_prob_ci, "elo": r.elo, "comparisons": r.comparisons,
                                "wins": r.wins, "losses": r.losses, "ties": r.ties} for r in self.ratings],
                "pairwise": self.pairwise}


def win_matrix(n: int, pairs: np.ndarray, outcomes: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """``W[i, j]``: (weighted) wins of i over j; a tie adds a half to both sides.

    Args:
        n: number of generators.
        pairs: (N, 2) generator indices of each comparison.
        outcomes: (N,) 1 when the first won, 0 when the second did, 0.5 for a tie.
        weights: (N,) how often each row counts (the bootstrap's resampling counts); 1 when None.
    """
    weights = np.ones(len(outcomes)) if weights is None else weights
    wins = np.zeros((n, n))
    np.add.at(wins, (pairs[:, 0], pairs[:, 1]), weights * outcomes)
    np.add.at(wins, (pairs[:, 1], pairs[:, 0]), weights * (1.0 - outcomes))
    return wins


def fit(wins: np.ndarray, prior: float = 0.01, tol: float = 1e-10, max_iter: int = 100) -> np.ndarray:
    """Log-strengths (mean 0) maximising the Bradley-Terry log-likelihood minus ``prior/2 * sum(theta**2)``.

    Newton steps with step halving, so each step raises the penalised likelihood (which is concave). With
    ``prior=0`` the strengths are identified only up to a constant, so steps are taken in the mean-zero subspace.
    """
    n = wins.shape[0]
    games = wins + wins.T
    theta = np.zeros(n)

    def objective(t: np.ndarray) -> float:
        diff = t[:, None] - t[None, :]
        return float(-(wins * np.logaddexp(0.0, -diff)).sum() - 0.5 * prior * (t @ t))

    value = objective(theta)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))  # P(i beats j), (n, n)
        grad = (wins - games * p).sum(axis=1) - prior * theta
        curvature = games * p * (1.0 - p)
        hessian = np.diag(curvature.sum(axis=1)) - curvature + prior * np.eye(n)  # minus the Hessian
        step = np.linalg.lstsq(hessian, grad, rcond=None)[0]
        step -= step.mean() if prior == 0 else 0.0
        scale = 1.0
        while scale > 1e-8:
            candidate = theta + scale * step
            new_value = objective(candidate)
            if new_value >= value - 1e-12:
                break
            scale /= 2
        theta, value = candidate, new_value
        if np.max(np.abs(scale * step)) < tol:
            break
    return theta - theta.mean()


def points(theta: np.ndarray) -> np.ndarray:
    """Log-strengths on the Elo-style scale, the mean anchored at 1000."""
    return ANCHOR + ELO_SCALE * (theta - theta.mean())


def win_probabilities(theta: np.ndarray) -> np.ndarray:
    """P(i beats an opponent drawn uniformly from the others), for each i."""
    n = len(theta)
    p = 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))
    return (p.sum(axis=1) - 0.5) / max(n - 1, 1)  # drop the diagonal's sigmoid(0) = 0.5


def online_elo(n: int, pairs: np.ndarray, outcomes: np.ndarray, k: float = 32.0) -> np.ndarray:
    """Elo ratings after replaying the comparisons in order (each starts at 1000)."""
    ratings = np.full(n, ANCHOR)
    for (i, j), outcome in zip(pairs, outcomes, strict=True):
        expected = 1.0 / (1.0 + 10.0 ** ((ratings[j] - ratings[i]) / 400.0))
        ratings[i] += k * (outcome - expected)
        ratings[j] -= k * (outcome - expected)
    return ratings


def bootstrap(n: int, pairs: np.ndarray, outcomes: np.ndarray, rounds: int, seed: int, prior: float = 0.01
              ) -> tuple[np.ndarray, np.ndarray]:
    """Scores and win probabilities of ``rounds`` refits on comparisons resampled with replacement.

    Resampling N rows with replacement is one multinomial draw of N over the rows, so the refits need no copies
    of the data. Returns two (rounds, n) arrays.
    """
    rng = np.random.default_rng(seed)
    total = len(outcomes)
    scores, probs = np.empty((rounds, n)), np.empty((rounds, n))
    for r in range(rounds):
        counts = rng.multinomial(total, np.full(total, 1.0 / total))
        theta = fit(win_matrix(n, pairs, outcomes, counts.astype(float)), prior)
        scores[r], probs[r] = points(theta), win_probabilities(theta)
    return scores, probs


def rank(names: Sequence[str], results: Sequence[tuple[str, str, float]], rounds: int = 1000, seed: int = 0,
         confidence: float = 0.95, prior: float = 0.01, elo_k: float = 32.0) -> Leaderboard:
    """The leaderboard of ``names`` from ``(first, second, outcome)`` judgements in the order they were made.

    Args:
        names: every generator to rank (one with no comparisons gets the prior's 1000).
        results: outcome 1 when ``first`` won, 0 when ``second`` did, 0.5 for a tie.
        rounds: bootstrap refits for the intervals; 0 for none.
        seed: the bootstrap's seed: the same seed gives the same intervals.
        confidence: the intervals' coverage (0.95: the 2.5th to 97.5th percentiles).
    """
    index = {name: i for i, name in enumerate(names)}
    n = len(names)
    pairs = np.array([(index[a], index[b]) for a, b, _ in results], dtype=np.int64).reshape(-1, 2)
    outcomes = np.array([o for _, _, o in results], dtype=float)
    theta = fit(win_matrix(n, pairs, outcomes), prior)
    score, prob, elo = points(theta), win_probabilities(theta), online_elo(n, pairs, outcomes, elo_k)
    score_ci = prob_ci = [None] * n
    if rounds > 0 and len(outcomes):
        boot_scores, boot_probs = bootstrap(n, pairs, outcomes, rounds, seed, prior)
        q = [50 * (1 - confidence), 50 * (1 + confidence)]
        score_ci = [tuple(float(x) for x in v) for v in np.percentile(boot_scores, q, axis=0).T]
        prob_ci = [tuple(float(x) for x in v) for v in np.percentile(boot_probs, q, axis=0).T]
    wins, losses, ties = np.zeros(n, int), np.zeros(n, int), np.zeros(n, int)
    for (i, j), outcome in zip(pairs, outcomes, strict=True):
        if outcome == 0.5:
            ties[i] += 1
            ties[j] += 1
        else:
            winner, loser = (i, j) if outcome == 1.0 else (j, i)
            wins[winner] += 1
            losses[loser] += 1
    ratings = [Rating(name, float(score[i]), score_ci[i], float(prob[i]), prob_ci[i], float(elo[i]),
                      int(wins[i] + losses[i] + ties[i]), int(wins[i]), int(losses[i]), int(ties[i]))
               for i, name in enumerate(names)]
    ratings.sort(key=lambda r: -r.score)
    p = 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))
    pairwise = {a: {b: float(p[index[a], index[b]]) for b in names if b != a} for a in names}
    return Leaderboard(ratings, pairwise, len(outcomes), int((outcomes == 0.5).sum()), rounds, confidence, seed,
                       prior)

"""The terminal rater: two texts from two generators, blind, one keypress for the better one; saved at once.

Which pair comes next: the two generators compared least so far (by anyone; ties broken at random), then a
random sample of each that this rater has not yet judged together, so the ratings spread evenly over all pairs of
generators. A coin decides which text is shown as A (left, or on top when the terminal is narrow), so a habit of
preferring the first text cancels out; the side is stored with the judgement and :func:`position_bias` measures
it. Every judgement is committed before the next pair is shown: Ctrl-C, Ctrl-D or ``q`` end the session and lose
nothing already answered. A skipped pair is not shown again in the same session.

The rater reads from and writes to the streams it is given, so tests (and other front ends) drive it with
scripted input.
"""

from __future__ import annotations

import itertools
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from rich.console import Console, Group
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from genchain.errors import InputError
from genchain.eval.human_store import Comparison, RatingStore, Sample

KEYS = {"a": "a", "b": "b", "t": "tie", "tie": "tie", "s": "skip", "skip": "skip", "q": "quit", "quit": "quit"}
PROMPT = "Which is better? [a] A  [b] B  [t] tie  [s] skip  [q] quit > "
SIDE_BY_SIDE_WIDTH = 100  # narrower terminals show the texts one above the other
RANDOM_TRIES = 64  # random draws of a sample pair before listing the unseen ones


@dataclass
class SessionResult:
    saved: int
    skipped: int
    ended: str  # "quit", "eof", "interrupted", "limit" or "exhausted"


class PairChooser:
    """Picks the next pair to show one rater: least-compared generators first, never a pair of samples twice."""

    def __init__(self, store: RatingStore, names: Sequence[str], rater: str, rng: random.Random):
        self.rng = rng
        self.samples = {name: store.samples_of(name) for name in names}
        for name, found in self.samples.items():
            if not found:
                raise InputError(f"generator {name!r} has no samples in {store.name}; import a samples file")
        history = store.comparisons()
        self.counts = {frozenset(p): 0 for p in itertools.combinations(names, 2)}
        for row in history:
            key = frozenset((row.generator_a, row.generator_b))
            if key in self.counts:
                self.counts[key] += 1
        self.seen = {frozenset((row.sample_a, row.sample_b)) for row in history if row.rater == rater}
        self.exhausted: set[frozenset[str]] = set()

    def next_pair(self) -> tuple[Sample, Sample] | None:
        """Two samples of different generators (in random order) this rater has not judged together, or None."""
        while True:
            open_pairs = [key for key in self.counts if key not in self.exhausted]
            if not open_pairs:
                return None
            fewest = min(self.counts[key] for key in open_pairs)
            key = self.rng.choice([k for k in open_pairs if self.counts[k] == fewest])
            first, second = self.rng.sample(sorted(key), 2)
            pair = self._unseen_samples(first, second)
            if pair is not None:
                return pair
            self.exhausted.add(key)

    def mark(self, a: Sample, b: Sample, saved: bool) -> None:
        """Never offer this pair of samples again; a saved judgement also counts for its pair of generators."""
        self.seen.add(frozenset((a.id, b.id)))
        if saved:
            self.counts[frozenset((a.generator, b.generator))] += 1

    def _unseen_samples(self, first: str, second: str) -> tuple[Sample, Sample] | None:
        left, right = self.samples[first], self.samples[second]
        for _ in range(RANDOM_TRIES):
            a, b = self.rng.choice(left), self.rng.choice(right)
            if frozenset((a.id, b.id)) not in self.seen:
                return a, b
        unseen = [(a, b) for a in left for b in right if frozenset((a.id, b.id)) not in self.seen]
        return self.rng.choice(unseen) if unseen else None


def rate(store: RatingStore, names: Sequence[str], rater: str, *, input_stream: TextIO | None = None,
         output: TextIO | None = None, max_pairs: int | None = None, seed: int | None = None,
         width: int | None = None, clock: Callable[[], float] = time.monotonic) -> SessionResult:
    """Run one rating session for ``rater`` over the generators ``names``.

    Args:
        store: where samples come from and judgements go.
        names: at least two generators whose samples are in ``store``.
        input_stream: where the answers are read (one per line); stdin when None.
        output: where the texts and prompts go; stdout when None.
        max_pairs: stop after this many saved judgements (skips do not count); None for no limit.
        seed: makes the order of pairs and sides reproducible.
        width: the console width (default: the terminal's); 100 or more shows the texts side by side.
        clock: seconds since some fixed point; the time to decide is stored with each judgement.
    """
    if len(set(names)) < 2:
        raise InputError(f"need samples from at least 2 generators to compare; got {len(set(names))} "
                         f"({', '.join(names) or 'none'})")
    input_stream = input_stream or sys.stdin
    console = Console(file=output or sys.stdout, width=width, highlight=False)
    chooser = PairChooser(store, names, rater, random.Random(seed))
    coin = random.Random(None if seed is None else seed + 1)
    saved = skipped = 0
    ended = "limit"
    while max_pairs is None or saved < max_pairs:
        pair = chooser.next_pair()
        if pair is None:
            ended = "exhausted"
            break
        a, b = pair
        a_side = coin.choice(("left", "right"))
        shown = (a, b) if a_side == "left" else (b, a)
        _show(console, shown, saved + skipped + 1)
        started = clock()
        try:
            key = _ask(console, input_stream)
        except KeyboardInterrupt:
            console.print()
            ended = "interrupted"
            break
        if key in ("quit", "eof"):
            ended = key
            break
        if key == "skip":
            chooser.mark(a, b, saved=False)
            skipped += 1
            continue
        if key == "tie":
            choice = "tie"
        else:  # the key names a screen position; the store names the sample
            picked = shown[0] if key == "a" else shown[1]
            choice = "a" if picked is a else "b"
        store.add_comparison(a.id, b.id, rater, choice, a_side, seconds=round(clock() - started, 3),
                             source="terminal")
        chooser.mark(a, b, saved=True)
        saved += 1
    if ended == "exhausted":
        console.print(f"{rater} has judged every pair of samples on offer.", markup=False)
    console.print(f"saved {saved} judgement{'s' * (saved != 1)} ({skipped} skipped) in {store.name}", markup=False)
    return SessionResult(saved, skipped, ended)


def _show(console: Console, shown: tuple[Sample, Sample], number: int) -> None:
    console.print(Rule(f"pair {number}"))
    panels = [Panel(_body(sample), title=label, title_align="left") for label, sample in zip("AB", shown, strict=True)]
    if console.width >= SIDE_BY_SIDE_WIDTH:
        grid = Table.grid(expand=True, padding=(0, 1))
        grid.add_column(ratio=1)
        grid.add_column(ratio=1)
        grid.add_row(*panels)
        console.print(grid)
    else:
        console.print(Group(*panels))


def _body(sample: Sample) -> Text:
    """The prompt (dim) and the generated text, as plain text: markup in a sample is shown, never interpreted."""
    body = Text()
    if sample.prompt:
        body.append(sample.prompt, style="dim")
    body.append(sample.text)
    return body


def _ask(console: Console, input_stream: TextIO) -> str:
    """The next valid answer: a, b, tie, skip, quit, or eof at the end of the input; asks again on anything else."""
    while True:
        console.print(PROMPT, end="", markup=False)
        console.file.flush()
        line = input_stream.readline()
        if not line:
            console.print()
            return "eof"
        key = KEYS.get(line.strip().lower())
        if key is not None:
            return key
        console.print(f"{line.strip()!r} is not an answer: type a, b, t, s or q and press Enter", markup=False)


def position_bias(rows: Sequence[Comparison]) -> tuple[float | None, int]:
    """The share of decided (not tied) judgements won by the text shown as A (left or on top), and how many.

    Near 0.5 when raters judge the texts, not their position; None when nothing was decided.
    """
    decided = [row for row in rows if row.choice != "tie"]
    if not decided:
        return None, 0
    first_won = sum((row.choice == "a") == (row.a_side == "left") for row in decided)
    return first_won / len(decided), len(decided)


def outcomes(rows: Sequence[Comparison]) -> list[tuple[str, str, float]]:
    """Judgements as ``(generator_a, generator_b, 1 | 0 | 0.5)`` for :func:`genchain.eval.bradley_terry.rank`;
    two samples of one generator say nothing about its rank and are left out."""
    value = {"a": 1.0, "b": 0.0, "tie": 0.5}
    return [(row.generator_a, row.generator_b, value[row.choice]) for row in rows
            if row.generator_a != row.generator_b]

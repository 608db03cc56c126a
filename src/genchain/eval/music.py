"""How Bach-like are generated pieces? Histogram distances and simple statistics against held-out chorales.

Symbolic music has no agreed likelihood-free score, so we use the statistics of Yang & Lerch (2020, "On the
evaluation of generative models in music"): the pitch-class histogram and the note-duration histogram of a
set of pieces, compared with the held-out pieces' by total variation distance (half the L1 distance: 0 for
equal histograms, 1 for disjoint ones), plus pitch range, notes per bar and the share of notes in the key.

Numbers only mean something next to baselines, measured the same way in the same report:

* ``random``: notes drawn uniformly over the training pitch range and the training durations, as many per bar
  as the training pieces have -- the ceiling a model must beat;
* ``markov``: a first-order Markov chain over (onset step, pitch, duration) events fitted on the training split,
  in C major / C minor (pieces transposed there before counting, samples transposed to the key asked for);
* ``heldout_vs_train``: the held-out pieces against the training pieces -- the floor, what Bach scores against
  Bach.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from genchain.data import music_tokens as mt

MAJOR_SCALE = frozenset({0, 2, 4, 5, 7, 9, 11})
# natural minor plus the raised sixth and seventh of the melodic and harmonic forms, which chorales use freely
MINOR_SCALE = frozenset({0, 2, 3, 5, 7, 8, 10, 9, 11})


# ---------------------------------------------------------------------------------------------- metrics
def pitch_class_histogram(pieces: list[mt.Piece]) -> np.ndarray:
    """Share of notes on each of the 12 pitch classes (C = 0) over all ``pieces``."""
    counts = np.zeros(12)
    for piece in pieces:
        for note in piece.notes:
            counts[note.pitch % 12] += 1
    return counts / max(counts.sum(), 1)


def duration_histogram(pieces: list[mt.Piece]) -> np.ndarray:
    """Share of notes of each duration, 1..MAX_DUR 16ths (index 0 is one 16th)."""
    counts = np.zeros(mt.MAX_DUR)
    for piece in pieces:
        for note in piece.notes:
            counts[min(note.dur, mt.MAX_DUR) - 1] += 1
    return counts / max(counts.sum(), 1)


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """Half the L1 distance between two histograms: 0 when equal, 1 when their supports are disjoint."""
    return float(0.5 * np.abs(np.asarray(p, dtype=float) - np.asarray(q, dtype=float)).sum())


def pitch_range(pieces: list[mt.Piece]) -> float:
    """Mean over pieces of highest minus lowest MIDI pitch (semitones); empty pieces are skipped."""
    ranges = [max(n.pitch for n in p.notes) - min(n.pitch for n in p.notes) for p in pieces if p.notes]
    return float(np.mean(ranges)) if ranges else 0.0


def notes_per_bar(pieces: list[mt.Piece]) -> float:
    """All notes over all bars (a bar counts up to the piece's last note)."""
    bars = sum(p.num_bars for p in pieces)
    return sum(len(p.notes) for p in pieces) / bars if bars else 0.0


def in_key_share(pieces: list[mt.Piece]) -> float:
    """Share of notes whose pitch class is in the piece's scale (major, or minor with raised 6th and 7th)."""
    inside = total = 0
    for piece in pieces:
        scale = MAJOR_SCALE if piece.mode == "major" else MINOR_SCALE
        for note in piece.notes:
            inside += (note.pitch - piece.tonic) % 12 in scale
            total += 1
    return inside / total if total else 0.0


def compare(generated: list[mt.Piece], reference: list[mt.Piece]) -> dict[str, float]:
    """The distances of ``generated`` to ``reference`` and ``generated``'s own statistics."""
    return {"pitch_class_tv": round(total_variation(pitch_class_histogram(generated),
                                                    pitch_class_histogram(reference)), 4),
            "duration_tv": round(total_variation(duration_histogram(generated), duration_histogram(reference)), 4),
            "pitch_range": round(pitch_range(generated), 2), "notes_per_bar": round(notes_per_bar(generated), 2),
            "in_key": round(in_key_share(generated), 4), "pieces": len(generated)}


# ---------------------------------------------------------------------------------------------- baselines
def random_pieces(train: list[mt.Piece], keys: list[tuple[int, str, int]], bars: int,
                  rng: np.random.Generator) -> list[mt.Piece]:
    """Uniform notes over the training pitch range and durations, at the training density, one per key."""
    pitches = [n.pitch for p in train for n in p.notes]
    durations = sorted({n.dur for p in train for n in p.notes})
    density = notes_per_bar(train)
    low, high = min(pitches), max(pitches)
    out = []
    for tonic, mode, bar_len in keys:
        notes = [mt.Note(bar * bar_len + int(rng.integers(bar_len)), int(rng.integers(low, high + 1)),
                         int(rng.choice(durations)))
                 for bar in range(bars) for _ in range(int(round(density)))]
        out.append(mt.Piece(tonic, mode, bar_len, mt.canonical_notes(notes)))
    return out


class MarkovBaseline:
    """First-order Markov chain over (onset step, pitch relative to C, duration) events, one chain per mode."""

    def __init__(self, train: list[mt.Piece]):
        self.transitions: dict[str, dict[tuple, dict[tuple, int]]] = {m: defaultdict(lambda: defaultdict(int))
                                                                      for m in mt.MODES}
        self.starts: dict[str, dict[tuple, int]] = {m: defaultdict(int) for m in mt.MODES}
        for piece in train:
            shift = -piece.tonic if piece.tonic <= 6 else 12 - piece.tonic  # to C, the nearer way
            events = self.events(piece.transpose(shift))
            if not events:
                continue
            self.starts[piece.mode][events[0]] += 1
            for a, b in zip(events, events[1:], strict=False):
                self.transitions[piece.mode][a][b] += 1

    @staticmethod
    def events(piece: mt.Piece) -> list[tuple[int, int, int]]:
        """(onset - previous onset, pitch, duration) per note in token order; the first step is from 0."""
        out, last = [], 0
        for note in piece.notes:
            out.append((note.onset - last, note.pitch, note.dur))
            last = note.onset
        return out

    def transition_probs(self, mode: str, state: tuple) -> dict[tuple, float]:
        row = self.transitions[mode].get(state, {})
        total = sum(row.values())
        return {k: v / total for k, v in row.items()} if total else {}

    def _draw(self, table: dict[tuple, int], rng: np.random.Generator) -> tuple:
        keys = list(table)
        weights = np.array([table[k] for k in keys], dtype=float)
        return keys[int(rng.choice(len(keys), p=weights / weights.sum()))]

    def sample(self, tonic: int, mode: str, bar_len: int, bars: int, rng: np.random.Generator) -> mt.Piece:
        """A piece of ``bars`` bars in the given key: walk the chain until the onsets leave the last bar."""
        if not self.starts[mode]:
            mode_used = next(m for m in mt.MODES if self.starts[m])  # a corpus without this mode: the other chain
        else:
            mode_used = mode
        notes, onset = [], 0
        state = self._draw(self.starts[mode_used], rng)
        while True:
            onset += state[0]
            if onset >= bars * bar_len:
                break
            notes.append(mt.Note(onset, state[1], state[2]))
            row = self.transitions[mode_used].get(state)
            state = self._draw(row, rng) if row else self._draw(self.starts[mode_used], rng)
            if not row:
                onset += 1  # a dead end restarts the chain, a little later
        shift = tonic if tonic <= 6 else tonic - 12
        return mt.Piece(0, mode, bar_len, mt.canonical_notes(notes)).transpose(shift)


# ---------------------------------------------------------------------------------------------- the report
def evaluate_run(run_dir: str | Path, num: int = 64, bars: int = 8, seed: int = 0, temperature: float = 1.0,
                 top_k: int = 0, batch_size: int = 16) -> dict[str, Any]:
    """Generate ``num`` pieces of ``bars`` bars (keys and metres of the held-out pieces, in turn) and compare
    them, and the baselines, with the held-out pieces."""
    from genchain.errors import ConfigError
    from genchain.generate.music import MusicGenerator, header
    from genchain.generate.text import SamplingConfig
    from genchain.train.music import load_pieces_file

    if num < 1 or bars < 1:
        raise ConfigError(f"--num and --bars must be at least 1, got {num} and {bars}")
    pieces = load_pieces_file(run_dir)
    train = [mt.decode(ids) for ids in pieces["train"].values()]
    heldout = [mt.decode(ids) for ids in pieces["val"].values()]
    keys = [(heldout[i % len(heldout)].tonic, heldout[i % len(heldout)].mode, heldout[i % len(heldout)].bar_len)
            for i in range(num)]
    generator = MusicGenerator.from_run(run_dir)
    started = time.perf_counter()
    generated: list[mt.Piece] = []
    for first in range(0, num, batch_size):
        chunk = keys[first : first + batch_size]
        cfg = SamplingConfig(max_new_tokens=1, temperature=temperature, top_k=top_k, seed=seed + first)
        generated += [s.piece for s in generator.sample([header(*k) for k in chunk], bars, cfg)]
    seconds = time.perf_counter() - started
    rng = np.random.default_rng(seed)
    markov = MarkovBaseline(train)
    return {
        "run": str(Path(run_dir).resolve()), "num": num, "bars": bars, "seed": seed, "temperature": temperature,
        "top_k": top_k, "heldout_pieces": len(heldout), "train_pieces": len(train),
        "model": compare(generated, heldout),
        "random": compare(random_pieces(train, keys, bars, rng), heldout),
        "markov": compare([markov.sample(t, m, b, bars, rng) for t, m, b in keys], heldout),
        "heldout_vs_train": compare(heldout, train),
        "samples_per_second": round(num / seconds, 3),
    }

"""Symbolic music as tokens: a score (MusicXML, .mxl, Humdrum .krn, MIDI) <-> a REMI-like event sequence.

A piece becomes ``BOS KEY_<tonic>_<mode> TS_<16ths per bar>`` and then, bar by bar, ``BAR`` followed by the
onsets in the bar: ``POS_<16th>`` and, for every note starting there (highest first), ``PITCH_<midi>
DUR_<16ths>``; ``EOS`` ends it. Why this shape (Huang & Yang 2020, "Pop Music Transformer"): ``BAR`` and
``POS`` give the model the metre explicitly, so it need not count durations to know where it is, and a bar
count is just a count of ``BAR`` tokens -- which is how generation stops after N bars. The key sits in the
header so a sample can be conditioned on it, and transposing a piece is a shift of its pitch tokens plus a new
key token, which makes 12-key augmentation free.

Voices are not kept: the four chorale parts become one stream of notes. Everything is quantised to a 16th
grid; durations are capped at :data:`MAX_DUR` 16ths. There is no tempo token: the chorales carry no tempo
marks, so a tempo token would be constant in training and condition nothing; ``--tempo`` sets the MIDI tempo.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

from genchain.errors import InputError

MIN_PITCH, MAX_PITCH = 21, 108  # the piano range
MAX_DUR = 32  # two 4/4 bars of 16ths
MAX_BAR = 32  # the longest bar, in 16ths (e.g. 8/4)
MUSIC_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn", ".mid", ".midi")
PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MODES = ("major", "minor")


def _build_vocab() -> list[str]:
    vocab = ["PAD", "BOS", "EOS", "BAR"]
    vocab += [f"KEY_{pc}_{mode}" for mode in MODES for pc in range(12)]
    vocab += [f"TS_{n}" for n in range(1, MAX_BAR + 1)]
    vocab += [f"POS_{p}" for p in range(MAX_BAR)]
    vocab += [f"PITCH_{p}" for p in range(MIN_PITCH, MAX_PITCH + 1)]
    vocab += [f"DUR_{d}" for d in range(1, MAX_DUR + 1)]
    return vocab


VOCAB = _build_vocab()
TOKEN_ID = {name: i for i, name in enumerate(VOCAB)}
PAD, BOS, EOS, BAR = (TOKEN_ID[n] for n in ("PAD", "BOS", "EOS", "BAR"))
KEY0, TS0, POS0 = TOKEN_ID["KEY_0_major"], TOKEN_ID["TS_1"], TOKEN_ID["POS_0"]
PITCH0, DUR0 = TOKEN_ID[f"PITCH_{MIN_PITCH}"], TOKEN_ID["DUR_1"]
HEADER_LEN = 3  # BOS KEY TS
READER_VERSION = b"music-tokens 2\n"  # part of the parse cache's key: bump when read_piece changes


@dataclass(frozen=True)
class Note:
    """One note on the 16th grid: onset from the start of bar 0, MIDI pitch, duration."""

    onset: int
    pitch: int
    dur: int


@dataclass(frozen=True)
class Piece:
    """A quantised piece: its key (tonic pitch class 0-11, mode), bar length in 16ths, and notes."""

    tonic: int
    mode: str
    bar_len: int
    notes: tuple[Note, ...]

    @property
    def num_bars(self) -> int:
        return max((n.onset // self.bar_len for n in self.notes), default=-1) + 1

    def transpose(self, semitones: int) -> Piece:
        """The piece ``semitones`` higher, key included; notes leaving the piano range are dropped."""
        notes = tuple(Note(n.onset, n.pitch + semitones, n.dur) for n in self.notes
                      if MIN_PITCH <= n.pitch + semitones <= MAX_PITCH)
        return Piece((self.tonic + semitones) % 12, self.mode, self.bar_len, notes)


def _note_order(n: Note) -> tuple[int, int, int]:
    """The canonical order of notes: by onset, then highest first (as the tokens list them)."""
    return (n.onset, -n.pitch, n.dur)


def key_name(tonic: int, mode: str) -> str:
    return f"{PITCH_NAMES[tonic]} {mode}"


def parse_key(text: str) -> tuple[int, str]:
    """``"D major"``, ``"f# minor"``, ``"Bb"`` -> (tonic pitch class, mode); InputError otherwise."""
    from music21 import pitch

    parts = text.strip().split()
    mode = parts[1].lower() if len(parts) > 1 else "major"
    if not parts or len(parts) > 2 or mode not in MODES:
        raise InputError(f"--key {text!r} is not a key; write e.g. \"D major\" or \"f# minor\"")
    try:
        tonic = pitch.Pitch(parts[0].replace("b", "-") if len(parts[0]) > 1 else parts[0]).pitchClass
    except Exception as err:  # music21 raises several types for bad names
        raise InputError(f"--key {text!r}: {parts[0]!r} is not a note name (C, F#, Bb, ...)") from err
    return tonic, mode


# ---------------------------------------------------------------------------------------------- tokens
def encode(piece: Piece) -> list[int]:
    """The token ids of ``piece``, header and ``EOS`` included."""
    ids = [BOS, KEY0 + MODES.index(piece.mode) * 12 + piece.tonic, TS0 + piece.bar_len - 1]
    by_bar: dict[int, list[Note]] = {}
    for note in piece.notes:
        by_bar.setdefault(note.onset // piece.bar_len, []).append(note)
    for bar in range(piece.num_bars):
        ids.append(BAR)
        last_pos = -1
        for note in sorted(by_bar.get(bar, []), key=_note_order):
            pos = note.onset % piece.bar_len
            if pos != last_pos:
                ids.append(POS0 + pos)
                last_pos = pos
            ids += [PITCH0 + note.pitch - MIN_PITCH, DUR0 + min(note.dur, MAX_DUR) - 1]
    ids.append(EOS)
    return ids


def decode(ids: list[int]) -> Piece:
    """The piece that ``ids`` spell; malformed stretches (a pitch without a duration, ...) are skipped, so
    a sampled sequence always decodes. Decoding stops at ``EOS``."""
    tonic, mode, bar_len = 0, "major", 16
    notes: list[Note] = []
    bar, pos, pitch = -1, 0, None
    for tok in ids:
        name = VOCAB[tok] if 0 <= tok < len(VOCAB) else "PAD"
        if name == "EOS":
            break
        if bar < 0 and name.startswith("KEY_"):  # the header's; a key or metre token inside the piece is ignored
            _, pc, mode = name.split("_")
            tonic = int(pc)
        elif bar < 0 and name.startswith("TS_"):
            bar_len = int(name[3:])
        elif name == "BAR":
            bar, pos, pitch = bar + 1, 0, None
        elif name.startswith("POS_"):
            pos, pitch = int(name[4:]), None
        elif name.startswith("PITCH_"):
            pitch = int(name[6:])
        elif name.startswith("DUR_") and pitch is not None and bar >= 0 and pos < bar_len:
            notes.append(Note(max(bar, 0) * bar_len + pos, pitch, int(name[4:])))
            pitch = None
    return Piece(tonic, mode, bar_len, canonical_notes(notes))


def transpose_ids(ids: list[int], semitones: int) -> list[int]:
    """``ids`` transposed on the token level (pitches and key); notes leaving the range keep their pitch."""
    out = []
    for tok in ids:
        if PITCH0 <= tok < PITCH0 + MAX_PITCH - MIN_PITCH + 1:
            shifted = tok + semitones
            out.append(shifted if PITCH0 <= shifted <= PITCH0 + MAX_PITCH - MIN_PITCH else tok)
        elif KEY0 <= tok < KEY0 + 24:
            mode, pc = divmod(tok - KEY0, 12)
            out.append(KEY0 + mode * 12 + (pc + semitones) % 12)
        else:
            out.append(tok)
    return out


def count_bars(ids: list[int]) -> int:
    return sum(1 for t in ids if t == BAR)


# ---------------------------------------------------------------------------------------------- scores
def read_piece(path: str | Path) -> Piece:
    """Parse and quantise a score file; InputError naming the file when it cannot be read or has no notes."""
    from music21 import converter, key, meter

    path = Path(path)
    try:
        midi = path.suffix.lower() in (".mid", ".midi")
        score = converter.parse(str(path), quantizePost=False) if midi else converter.parse(str(path))
    except Exception as err:  # music21 raises many types (MidiException, ValueError, IndexError, ...)
        raise InputError(f"cannot read {path} as a score ({type(err).__name__}: {err}); give a MIDI, MusicXML "
                         "or Humdrum file") from err
    first_ts = score.recurse().getElementsByClass(meter.TimeSignature).first()
    bar_len = round(first_ts.barDuration.quarterLength * 4) if first_ts is not None else 16
    if not 1 <= bar_len <= MAX_BAR:
        raise InputError(f"{path}: a bar of {bar_len} 16ths is outside 1..{MAX_BAR}")
    padding = 0.0
    parts = getattr(score, "parts", None)
    if parts:
        first_measure = parts[0].getElementsByClass("Measure").first()
        padding = float(first_measure.paddingLeft) if first_measure is not None else 0.0
    notes = [n for n in _tied_notes(score, padding) if n.dur > 0 and n.onset >= 0  # not grace notes
             and MIN_PITCH <= n.pitch <= MAX_PITCH]
    if not notes:
        raise InputError(f"{path} holds no notes; give a score with at least one note")
    found = score.recurse().getElementsByClass(key.KeySignature).first()
    k = found if isinstance(found, key.Key) else score.analyze("key")  # MIDI and bare key signatures: analyse
    mode = k.mode if k.mode in MODES else "major"
    return Piece(k.tonic.pitchClass, mode, bar_len, canonical_notes(notes))


def _tied_notes(score, padding: float) -> list[Note]:
    """The notes of ``score`` on the 16th grid, tied notes joined into one.

    music21's ``stripTies`` leaves some ties split (a note tied over two bar lines in a MIDI file it imported),
    so the joining is done here: a tie ``continue`` or ``stop`` extends the open note of that pitch.
    """
    out: list[Note] = []
    open_notes: dict[int, int] = {}  # pitch -> index in out of the note a tie started
    for element in sorted(score.flatten().notes, key=lambda e: float(e.offset)):
        onset = round((float(element.offset) + padding) * 4)
        dur = round(float(element.quarterLength) * 4)
        members = element.notes if hasattr(element, "notes") else (element,)
        for member in members:
            pitch, tie = member.pitch.midi, member.tie.type if member.tie is not None else None
            if tie in ("continue", "stop") and pitch in open_notes:
                first = out[open_notes[pitch]]
                out[open_notes[pitch]] = Note(first.onset, pitch, onset + dur - first.onset)
                if tie == "stop":
                    del open_notes[pitch]
                continue
            out.append(Note(onset, pitch, dur))
            if tie == "start":
                open_notes[pitch] = len(out) - 1
    return [Note(n.onset, n.pitch, min(n.dur, MAX_DUR)) for n in out]


def canonical_notes(notes: list[Note]) -> tuple[Note, ...]:
    """Notes as one MIDI channel can hold them: a pitch sounds once at a time.

    Two voices in unison become one note (the longer), and a note is cut where the same pitch starts again
    -- MIDI would end it there anyway, so without this a piece would not survive a trip through a MIDI file.
    """
    by_pitch: dict[int, dict[int, int]] = {}
    for n in notes:
        onsets = by_pitch.setdefault(n.pitch, {})
        onsets[n.onset] = max(onsets.get(n.onset, 0), n.dur)
    out = []
    for pitch, onsets in by_pitch.items():
        starts = sorted(onsets)
        for i, onset in enumerate(starts):
            dur = onsets[onset] if i + 1 == len(starts) else min(onsets[onset], starts[i + 1] - onset)
            out.append(Note(onset, pitch, dur))
    return tuple(sorted(out, key=_note_order))


def to_stream(piece: Piece, tempo: float = 90.0, program: int | None = None):
    """A music21 stream of ``piece`` (one part) with its key, metre and ``tempo``; ``program`` picks the
    General MIDI instrument (None: piano)."""
    from music21 import duration, instrument, key, meter, note, stream
    from music21 import tempo as m21tempo

    part = stream.Part()
    if program is not None:
        inst = instrument.Instrument()
        inst.midiProgram = program
        part.insert(0, inst)
    part.insert(0, m21tempo.MetronomeMark(number=tempo))
    part.insert(0, meter.TimeSignature(_time_signature(piece.bar_len)))
    part.insert(0, key.Key(PITCH_NAMES[piece.tonic].replace("b", "-"), piece.mode))
    for n in piece.notes:
        element = note.Note(n.pitch)
        element.duration = duration.Duration(n.dur / 4)
        part.insert(n.onset / 4, element)
    return part


def _time_signature(bar_len: int) -> str:
    return f"{bar_len // 4}/4" if bar_len % 4 == 0 else f"{bar_len // 2}/8" if bar_len % 2 == 0 else f"{bar_len}/16"


def write_midi(piece: Piece, path: str | Path, tempo: float = 90.0, program: int | None = None) -> Path:
    """Write ``piece`` as a standard MIDI file (via a temp file, so a failed write leaves nothing behind)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    to_stream(piece, tempo, program).write("midi", fp=str(tmp))
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------------------- corpora
def find_scores(root: str | Path) -> list[Path]:
    """The score files under ``root`` (a folder, searched recursively, or one file), sorted."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in MUSIC_SUFFIXES and not p.name.startswith("."))


def bach_chorale_paths() -> list[Path]:
    """music21's Bach chorales, one file per chorale (MusicXML before Humdrum), as ``data get`` writes them."""
    from music21 import corpus

    preference = {".mxl": 0, ".xml": 1, ".krn": 2}
    chosen: dict[str, Path] = {}
    for path in sorted(corpus.getComposer("bach"), key=lambda p: (preference.get(p.suffix, 9), p.name)):
        stem = path.name[: -len(path.suffix)]
        if path.suffix in preference and stem != "bwv846" and stem not in chosen:
            chosen[stem] = Path(path)
    return sorted(chosen.values(), key=lambda p: p.name)


def load_pieces(paths: list[Path], cache_dir: Path | None = None, skip_bad: bool = False) -> dict[str, Piece]:
    """Pieces by file name, parsed once and cached by the file's content hash (music21 takes ~0.2 s a file).

    ``skip_bad`` leaves out files that cannot be read (a whole corpus should not fail on one bad file); the
    names skipped are printed.
    """
    from tqdm.auto import tqdm

    pieces: dict[str, Piece] = {}
    skipped = []
    for path in tqdm(paths, desc="reading scores", unit="file", disable=None if len(paths) > 8 else True):
        digest = hashlib.sha256(READER_VERSION + path.read_bytes()).hexdigest()[:32]
        cached = cache_dir / f"{digest}.pkl" if cache_dir is not None else None
        if cached is not None and cached.is_file():
            pieces[path.name] = pickle.loads(cached.read_bytes())  # noqa: S301 -- our own cache
            continue
        try:
            piece = read_piece(path)
        except InputError:
            if not skip_bad:
                raise
            skipped.append(path.name)
            continue
        pieces[path.name] = piece
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp")
            tmp.write_bytes(pickle.dumps(piece))
            tmp.replace(cached)
    if skipped:
        more = " ..." if len(skipped) > 5 else ""
        print(f"skipped {len(skipped)} unreadable file(s): {', '.join(skipped[:5])}{more}")
    return pieces


def split_of(name: str, val_fraction: float) -> str:
    """``train`` or ``val`` for a piece, by a hash of its name: stable whatever else is in the folder."""
    h = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64
    return "val" if h < val_fraction else "train"


def vocab_json() -> str:
    return json.dumps({"kind": "music-remi", "vocab": VOCAB}, indent=0)

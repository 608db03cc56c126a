"""Music: tokenizer round trips, the train -> generate -> eval commands at tiny size, metrics and baselines."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from genchain.cli import main
from genchain.data import music_tokens as mt
from genchain.errors import InputError
from genchain.eval.music import (
    MarkovBaseline,
    compare,
    duration_histogram,
    in_key_share,
    notes_per_bar,
    pitch_class_histogram,
    pitch_range,
    random_pieces,
    total_variation,
)

music21 = pytest.importorskip("music21")
FAST = ["model=music-gpt-tiny", "max_iters=6", "eval_interval=3", "eval_iters=1", "batch_size=4",
        "warmup_iters=2", "log_interval=2", "tensorboard=false"]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GENCHAIN_CACHE", str(tmp_path_factory.getbasetemp() / "music-cache"))


@pytest.fixture(scope="module")
def chorales(tmp_path_factory) -> Path:
    """Four chorales copied from music21's corpus into a folder, as `data get` would write them."""
    paths = mt.bach_chorale_paths()
    if not paths:
        pytest.skip("music21 was installed without its corpus")
    folder = tmp_path_factory.mktemp("chorales")
    for path in paths[1:5]:
        shutil.copyfile(path, folder / path.name)
    return folder


def _piece(notes: list[tuple[int, int, int]], tonic: int = 0, mode: str = "major", bar_len: int = 16) -> mt.Piece:
    return mt.Piece(tonic, mode, bar_len, mt.canonical_notes([mt.Note(*n) for n in notes]))


# ---------------------------------------------------------------------------------------------- tokenizer
def test_tokens_round_trip_through_midi(chorales, tmp_path):
    for path in sorted(chorales.iterdir())[:2]:
        piece = mt.read_piece(path)
        ids = mt.encode(piece)
        assert ids[0] == mt.BOS and ids[-1] == mt.EOS and mt.count_bars(ids) == piece.num_bars
        assert mt.decode(ids) == piece
        mid = mt.write_midi(mt.decode(ids), tmp_path / f"{path.stem}.mid")
        back = mt.read_piece(mid)
        assert mt.encode(back) == ids  # key, metre, onsets, pitches and durations survive the MIDI file


def test_known_piece_encodes_to_known_tokens():
    piece = _piece([(0, 60, 4), (0, 64, 4), (20, 67, 8)], tonic=7, mode="minor", bar_len=16)
    names = [mt.VOCAB[i] for i in mt.encode(piece)]
    assert names == ["BOS", "KEY_7_minor", "TS_16", "BAR", "POS_0", "PITCH_64", "DUR_4", "PITCH_60", "DUR_4",
                     "BAR", "POS_4", "PITCH_67", "DUR_8", "EOS"]


def test_transpose_moves_pitches_and_key_alike():
    piece = _piece([(0, 60, 4), (4, 62, 4), (8, 64, 8)], tonic=0)
    assert mt.transpose_ids(mt.encode(piece), 3) == mt.encode(piece.transpose(3))
    assert mt.decode(mt.transpose_ids(mt.encode(piece), -2)).tonic == 10


def test_unisons_and_overlaps_become_one_channel():
    notes = mt.canonical_notes([mt.Note(0, 60, 4), mt.Note(0, 60, 8), mt.Note(2, 62, 8), mt.Note(4, 62, 2)])
    assert notes == (mt.Note(0, 60, 8), mt.Note(2, 62, 2), mt.Note(4, 62, 2))


def test_parse_key():
    assert mt.parse_key("D major") == (2, "major")
    assert mt.parse_key("f# minor") == (6, "minor")
    assert mt.parse_key("Bb") == (10, "major")
    for bad in ("H major", "C dorian", ""):
        with pytest.raises(InputError):
            mt.parse_key(bad)


def test_unreadable_and_empty_scores_name_the_file(tmp_path):
    bad = tmp_path / "broken.mid"
    bad.write_bytes(b"MThd\x00\x00 not midi")
    with pytest.raises(InputError, match="broken.mid"):
        mt.read_piece(bad)
    empty = tmp_path / "empty.mid"
    music21.stream.Stream().write("midi", fp=str(empty))
    with pytest.raises(InputError, match="empty.mid"):
        mt.read_piece(empty)


def test_bad_input_exits_2(tmp_path, capsys):
    bad = tmp_path / "broken.mid"
    bad.write_text("garbage")
    assert main(["train", "music", "--data", str(bad), "--out", str(tmp_path / "run")]) == 2
    assert "broken.mid" in capsys.readouterr().err
    assert main(["train", "music", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "run")]) == 2
    assert main(["generate", "music", "--run", str(tmp_path / "no-run"), "-o", str(tmp_path / "x.mid")]) == 2


# ---------------------------------------------------------------------------------------------- commands
@pytest.fixture(scope="module")
def music_run(chorales, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("music") / "run"
    assert main(["train", "music", "--data", str(chorales), "--out", str(run), *FAST]) == 0
    return run


def test_train_writes_a_music_run(music_run):
    card = json.loads((music_run / "card.json").read_text())
    assert card["family"] == "music" and card["model"] == "music-gpt-tiny"
    assert card["data"]["pieces"]["train"] + card["data"]["pieces"]["val"] == 4 and card["data"]["pieces"]["val"]
    pieces = json.loads((music_run / "music_pieces.json").read_text())
    assert not set(pieces["train"]) & set(pieces["val"])  # split by piece
    assert (music_run / "model.safetensors").is_file()


def test_generate_midi_with_requested_bars_and_key(music_run, tmp_path):
    out = tmp_path / "song.mid"
    assert main(["generate", "music", "--run", str(music_run), "--bars", "3", "--key", "g minor", "--seed", "1",
                 "--no-sign", "-o", str(out)]) == 0
    sidecar = json.loads(out.with_name("song.mid.json").read_text())
    assert sidecar["config"]["bars"] == 3 and sidecar["config"]["key"] == "G minor" and sidecar["seed"] == 1
    score = music21.converter.parse(str(out))  # music21 reads it back
    assert len(score.flatten().notes) > 0
    back = mt.read_piece(out)
    assert len(back.notes) == sidecar["notes"]
    assert back.num_bars <= 3 and all(n.onset < 3 * back.bar_len for n in back.notes)


def test_generate_is_seeded_and_stops_at_bars(music_run):
    from genchain.generate.music import MusicGenerator, header
    from genchain.generate.text import SamplingConfig

    gen = MusicGenerator.from_run(music_run)
    cfg = SamplingConfig(max_new_tokens=1, seed=5)
    a = gen.sample([header(2, "major")] * 3, 4, cfg)
    b = gen.sample([header(2, "major")] * 3, 4, cfg)
    assert [s.ids for s in a] == [s.ids for s in b]
    for s in a:
        assert mt.count_bars(s.ids) == 4 and s.ids[:3] == header(2, "major") and mt.EOS not in s.ids


def test_generate_continues_a_prime(music_run, chorales, tmp_path):
    prime = mt.read_piece(sorted(chorales.iterdir())[0])
    opening = mt.Piece(prime.tonic, prime.mode, prime.bar_len, tuple(n for n in prime.notes
                                                                        if n.onset < 2 * prime.bar_len))
    mt.write_midi(opening, tmp_path / "opening.mid")
    out = tmp_path / "more.mid"
    assert main(["generate", "music", "--run", str(music_run), "--bars", "4", "--prime",
                 str(tmp_path / "opening.mid"), "--no-sign", "-o", str(out)]) == 0
    back = mt.read_piece(out)
    assert {n for n in back.notes if n.onset < 2 * back.bar_len} >= set(opening.notes)
    assert main(["generate", "music", "--run", str(music_run), "--bars", "2", "--prime",
                 str(tmp_path / "opening.mid"), "-o", str(tmp_path / "x.mid")]) == 2  # prime already has 2 bars


@pytest.mark.skipif(shutil.which("fluidsynth") is None or not Path("/usr/share/sounds/sf2").is_dir(),
                    reason="fluidsynth or a GM soundfont is not installed")
def test_generate_wav_is_real_audio_and_signed(music_run, tmp_path):
    sf = pytest.importorskip("soundfile")
    out = tmp_path / "song.wav"
    assert main(["generate", "music", "--run", str(music_run), "--bars", "2", "--tempo", "120", "-o", str(out)]) == 0
    audio, rate = sf.read(out)
    assert rate == 44100 and len(audio) > rate * 0.5
    assert float(np.sqrt(np.mean(np.square(audio)))) > 1e-3  # not silence
    assert out.with_suffix(".mid").is_file() and out.with_name("song.wav.manifest.json").is_file()


def test_eval_reports_model_and_baselines(music_run, tmp_path):
    assert main(["eval", "music", "--run", str(music_run), "--num", "2", "--bars", "2",
                 "-o", str(tmp_path / "report.json")]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    for name in ("model", "random", "markov", "heldout_vs_train"):
        assert 0.0 <= report[name]["pitch_class_tv"] <= 1.0 and 0.0 <= report[name]["duration_tv"] <= 1.0
    assert report["model"]["pieces"] == 2 and report["samples_per_second"] > 0


# ---------------------------------------------------------------------------------------------- metrics
def test_histograms_and_distances_known_answers():
    c_major_triad = _piece([(0, 60, 4), (0, 64, 4), (0, 67, 8), (4, 72, 4)])
    hist = pitch_class_histogram([c_major_triad])
    assert hist[0] == pytest.approx(0.5) and hist[4] == pytest.approx(0.25) and hist[7] == pytest.approx(0.25)
    durations = duration_histogram([c_major_triad])
    assert durations[3] == pytest.approx(0.75) and durations[7] == pytest.approx(0.25)
    assert total_variation(hist, hist) == 0.0
    assert total_variation(np.eye(12)[0], np.eye(12)[1]) == 1.0
    assert total_variation([0.5, 0.5], [1.0, 0.0]) == pytest.approx(0.5)
    assert pitch_range([c_major_triad]) == 12
    two_bars = _piece([(0, 60, 4), (4, 62, 4), (16, 64, 4)])
    assert notes_per_bar([two_bars]) == pytest.approx(1.5)
    in_c = _piece([(0, 60, 4), (4, 61, 4), (8, 62, 4), (12, 63, 4)])  # C, C#, D, Eb
    assert in_key_share([in_c]) == pytest.approx(0.5)
    in_c_minor = mt.Piece(0, "minor", 16, in_c.notes)  # C, D, Eb in; C# out
    assert in_key_share([in_c_minor]) == pytest.approx(0.75)
    same = compare([c_major_triad], [c_major_triad])
    assert same["pitch_class_tv"] == 0 and same["duration_tv"] == 0


def test_markov_baseline_learns_a_deterministic_chain():
    scale = _piece([(4 * i, p, 4) for i, p in enumerate([62, 64, 66, 67] * 4)], tonic=2)  # D major, repeated
    chain = MarkovBaseline([scale])
    # fitted in C: D E F# G becomes C D E F, each step certain
    assert chain.transition_probs("major", (4, 60, 4)) == {(4, 62, 4): 1.0}
    assert chain.transition_probs("major", (4, 65, 4)) == {(4, 60, 4): 1.0}
    sample = chain.sample(7, "major", 16, 2, np.random.default_rng(0))  # asked for G major
    assert [n.pitch for n in sample.notes] == [55, 57, 59, 60] * 2 and sample.tonic == 7  # down: nearer
    assert in_key_share([sample]) == 1.0


def test_random_baseline_stays_in_the_training_range():
    train = [_piece([(0, 55, 4), (4, 70, 2), (8, 60, 8)])]
    pieces = random_pieces(train, [(0, "major", 16)] * 3, 4, np.random.default_rng(0))
    notes = [n for p in pieces for n in p.notes]
    assert notes and all(55 <= n.pitch <= 70 and n.dur in (2, 4, 8) for n in notes)
    assert all(p.num_bars <= 4 for p in pieces)


def test_wav_without_fluidsynth_says_what_to_install(music_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no fluidsynth on it
    assert main(["generate", "music", "--run", str(music_run), "--bars", "2", "-o", str(tmp_path / "x.wav")]) == 2
    assert "apt-get install --no-install-recommends fluidsynth" in capsys.readouterr().err
    assert not (tmp_path / "x.wav").exists() and not (tmp_path / "x.mid").exists()


def test_resume_continues_the_run(music_run, chorales):
    assert main(["train", "music", "--data", str(chorales), "--out", str(music_run), "--resume", "max_iters=8"]) == 0
    rows = [json.loads(line) for line in (music_run / "metrics.jsonl").read_text().splitlines()]
    assert max(r["iter"] for r in rows) == 8
    assert main(["train", "music", "--data", str(chorales), "--out", str(music_run), "--resume",
                 "transpose=0", "max_iters=10"]) == 2  # the music section may not change

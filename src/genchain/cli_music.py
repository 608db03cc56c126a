"""``genchain train music``, ``genchain generate music``, ``genchain eval music`` (see docs/music.md)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def cmd_train_music(args: argparse.Namespace) -> None:
    """Train a note-token GPT on scores: J. S. Bach's chorales from music21's corpus, or your MIDI/MusicXML.

    --data is bach-chorales (music21's corpus, no network), a folder of .mid/.mxl/.xml/.krn files (searched
    recursively, e.g. one written by `genchain data get bach-chorales`), or one file. Pieces are tokenised
    once (cached) into REMI-like events (key, metre, bar, position, pitch, duration) and split by piece.
    KEY=VALUE overrides any config field: model (music-gpt, music-gpt-tiny), transpose (augmentation range in
    semitones), val_fraction, max_pieces, n_layer, n_embd, block_size, dropout, batch_size, max_iters,
    max_seconds, max_cpu_seconds, learning_rate, ... Ctrl-C stops and saves.

    examples:
      genchain train music --data bach-chorales --out runs/music
      genchain train music --data bach-chorales --out runs/music-demo max_cpu_seconds=40
      genchain train music --data my_midis/ --out runs/mine model=music-gpt-tiny max_iters=300
      genchain train music --data bach-chorales --out runs/music --resume max_iters=8000
    """
    from genchain.train.music import train_music

    train_music(args.data, args.out, args.config, args.overrides, resume=args.resume).announce(args.out)


def cmd_generate_music(args: argparse.Namespace) -> None:
    """Compose --bars bars with a music run: a MIDI file, rendered to WAV with fluidsynth when -o ends in .wav.

    Sampling starts from the key (--key "D major", default C major) or continues an opening (--prime FILE,
    transposed to --key if given) and stops after exactly --bars bars. OUT.wav is rendered by Debian's
    fluidsynth with a General-MIDI soundfont (default /usr/share/sounds/sf2/default-GM.sf2); OUT.mid is kept
    beside it. A sidecar OUT.json (run, config, seed, prime) is written and, unless --no-sign, each file is
    signed (OUT.manifest.json) and entered in the ledger.

    examples:
      genchain generate music --run runs/music --bars 8 -o out.wav
      genchain generate music --run runs/music --bars 8 --key "g minor" --tempo 72 --seed 3 -o chorale.wav
      genchain generate music --run runs/music --bars 12 --prime opening.mid --temperature 0.9 -o more.mid
    """
    from genchain.generate.music import compose

    result = compose(args.run, Path(args.out), bars=args.bars, key=args.key, tempo=args.tempo, prime=args.prime,
                     temperature=args.temperature, top_k=args.top_k, seed=args.seed, soundfont=args.soundfont,
                     program=args.program)
    from genchain.data.music_tokens import key_name

    piece = result.piece
    print(f"wrote {', '.join(map(str, result.files))} ({args.bars} bars, {len(piece.notes)} notes, "
          f"{key_name(piece.tonic, piece.mode)})")
    if not args.sign:
        return
    from genchain.provenance.record import record_files

    params = {"bars": args.bars, "key": args.key, "tempo": args.tempo, "temperature": args.temperature,
              "top_k": args.top_k, "program": args.program}
    for record in record_files([(f, None) for f in result.files], kind="audio", run_dir=Path(args.run),
                               params=params, seed=args.seed, prompt=str(args.prime) if args.prime else None,
                               key=args.key_name, ledger=args.ledger):
        print(record.summary())


def cmd_eval_music(args: argparse.Namespace) -> None:
    """Compare generated pieces with the run's held-out pieces: pitch-class and duration histogram distances
    (total variation, 0 = same), pitch range, notes per bar and share of in-key notes, beside a random-note
    baseline, a first-order Markov chain fitted on the training split, and held-out vs training (the floor).

    examples:
      genchain eval music --run runs/music
      genchain eval music --run runs/music --num 64 --bars 8 -o music-report.json
    """
    from genchain.eval.music import evaluate_run

    report = evaluate_run(args.run, num=args.num, bars=args.bars, seed=args.seed, temperature=args.temperature,
                          top_k=args.top_k)
    from genchain.fileio import print_report

    print_report(report, args.output)


def add_music_commands(train: argparse._SubParsersAction, generate: argparse._SubParsersAction,
                       evaluate: argparse._SubParsersAction, command: Callable) -> None:
    """Register the music commands."""
    p = command(train, "music", cmd_train_music, "note-token Transformer on Bach chorales or your scores")
    p.add_argument("--data", required=True, metavar="bach-chorales|DIR|FILE")
    p.add_argument("--out", required=True, metavar="RUN_DIR")
    p.add_argument("--config", metavar="FILE.yaml")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")

    p = command(generate, "music", cmd_generate_music, "MIDI/WAV music from a music run")
    p.add_argument("--run", required=True, metavar="RUN_DIR")
    p.add_argument("-o", "--out", required=True, metavar="OUT.wav|OUT.mid")
    p.add_argument("--bars", type=int, default=8, help="bars to compose, the prime's included (default 8)")
    p.add_argument("--key", help='key to compose in, e.g. "D major", "f# minor" (default C major)')
    p.add_argument("--tempo", type=float, default=90.0, help="quarter notes per minute (default 90)")
    p.add_argument("--prime", metavar="FILE", help="an opening (MIDI/MusicXML) to continue")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0, help="sample from the k likeliest tokens (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--program", type=int, help="General-MIDI program 0-127 (default: piano; 19 church organ)")
    p.add_argument("--soundfont", metavar="FILE.sf2", help="soundfont for the WAV (default: the GM one installed)")
    p.add_argument("--key-name", dest="key_name", default="default", metavar="NAME",
                   help="identity that signs the files (default: default)")
    p.add_argument("--no-sign", dest="sign", action="store_false", help="write no manifest, no ledger entry")
    p.add_argument("--ledger", metavar="URL", help="ledger path or URL (default: $GENCHAIN_HOME/ledger.db)")

    p = command(evaluate, "music", cmd_eval_music, "histogram distances of generated vs held-out music")
    p.add_argument("--run", required=True, metavar="RUN_DIR")
    p.add_argument("--num", type=int, default=64, help="pieces to generate (default 64)")
    p.add_argument("--bars", type=int, default=8)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", metavar="REPORT.json")

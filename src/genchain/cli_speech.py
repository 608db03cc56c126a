"""``genchain train speech``, ``genchain generate speech``, ``genchain eval speech`` (see docs/audio.md)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def cmd_train_speech(args: argparse.Namespace) -> None:
    """Train a class-conditional VAE on spoken words (log-mel spectrograms, 64 mels x 64 frames, ~1 s).

    --data is a comma-separated list of: speech-digits (espeak-ng, many voices), speech-real (the ten real
    asterisk digit recordings, each with speed-perturbed copies), a folder of <label>/*.wav, or a dataset from
    `genchain data ingest --kind audio --label-from dirname`. KEY=VALUE overrides any config field:
    model (speech-vae, speech-vae-tiny), latent_dim, beta, clips_per_digit, real_copies, holdout, batch_size,
    max_iters, max_seconds, max_cpu_seconds, n_fft, hop, ... Spectrogram grids go to RUN_DIR/samples/.

    examples:
      genchain train speech --data speech-digits --out runs/speech
      genchain train speech --data speech-digits,speech-real --out runs/speech-mix max_cpu_seconds=600
      genchain train speech --data raw/words --out runs/words model=speech-vae-tiny max_iters=200
      genchain train speech --data speech-digits --out runs/speech --resume max_iters=6000
    """
    from genchain.train.speech import train_speech

    train_speech(args.data, args.out, args.config, args.overrides, resume=args.resume).announce(args.out)


def cmd_generate_speech(args: argparse.Namespace) -> None:
    """Say a sequence of words (digits as numerals or words) with a speech run: one WAV file.

    Each word is sampled from the class-conditional model with its own seed, turned into a waveform by
    Griffin-Lim, trimmed, and joined to the next with --gap-ms of silence. A word outside the run's vocabulary
    is an error that lists the vocabulary. OUT.wav gets a JSON sidecar OUT.wav.json (run, config, seed, text,
    words) and, unless --no-sign, a signed manifest OUT.wav.manifest.json and a ledger entry.

    examples:
      genchain generate speech --run runs/speech --say "3 7 1" -o out.wav
      genchain generate speech --run runs/speech --say "one two three" --seed 4 --gap-ms 150 -o count.wav
      genchain generate speech --run runs/speech --say "9 1 1" --griffin-lim-iters 200 --no-sign -o call.wav
    """
    from genchain.generate.speech import say

    result = say(args.run, args.say, Path(args.out), seed=args.seed, griffin_lim_iters=args.griffin_lim_iters,
                 gap_ms=args.gap_ms, temperature=args.temperature)
    print(f"wrote {result.path} ({result.seconds:.2f} s, {len(result.words)} words: {' '.join(result.words)})")
    if not args.sign:
        return
    from genchain.provenance.record import record_files

    params = {"say": args.say, "words": result.words, "griffin_lim_iters": args.griffin_lim_iters,
              "gap_ms": args.gap_ms, "temperature": args.temperature}
    for record in record_files([(result.path, None)], kind="audio", run_dir=Path(args.run), params=params,
                               seed=args.seed, prompt=args.say, key=args.key, ledger=args.ledger):
        print(record.summary())


def cmd_eval_speech(args: argparse.Namespace) -> None:
    """Judge a speech run with a digit/word classifier: accuracy on held-out real clips, on generated clips
    (after Griffin-Lim and re-analysis, so the waveform is judged), and on two baselines (Griffin-Lim of each
    class's mean spectrogram; noise).

    The classifier is a small CNN on the same log-mel frontend, trained on the run's training clips (it is
    cached in RUN_DIR/eval/). Per-label accuracies are in the report.

    examples:
      genchain eval speech --run runs/speech
      genchain eval speech --run runs/speech --per-label 20 -o report.json
    """
    from genchain.eval.speech import evaluate_run

    report = evaluate_run(args.run, per_label=args.per_label, griffin_lim_iters=args.griffin_lim_iters,
                          seed=args.seed)
    from genchain.fileio import print_report

    print_report(report, args.output)


def add_speech_commands(train: argparse._SubParsersAction, generate: argparse._SubParsersAction,
                        evaluate: argparse._SubParsersAction, command: Callable) -> None:
    """Register the speech commands."""
    p = command(train, "speech", cmd_train_speech, "class-conditional speech model (log-mel VAE)")
    p.add_argument("--data", required=True, metavar="SOURCE|RAW_DIR|DATASET[,...]")
    p.add_argument("--out", required=True, metavar="RUN_DIR")
    p.add_argument("--config", metavar="FILE.yaml")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")

    p = command(generate, "speech", cmd_generate_speech, "a WAV of words from a speech run")
    p.add_argument("--run", required=True, metavar="RUN_DIR")
    p.add_argument("--say", required=True, metavar="WORDS", help='words to say, e.g. "3 7 1" or "three seven one"')
    p.add_argument("-o", "--out", required=True, metavar="OUT.wav")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--griffin-lim-iters", type=int, default=64, help="phase-reconstruction iterations (default 64)")
    p.add_argument("--gap-ms", type=float, default=120.0, help="silence between words (default 120 ms)")
    p.add_argument("--temperature", type=float, default=1.0, help="scale of the latent draws (0: class average)")
    p.add_argument("--key", default="default", metavar="NAME", help="identity that signs the file")
    p.add_argument("--no-sign", dest="sign", action="store_false", help="write no manifest, no ledger entry")
    p.add_argument("--ledger", metavar="URL", help="ledger path or URL (default: $GENCHAIN_HOME/ledger.db)")

    p = command(evaluate, "speech", cmd_eval_speech, "classifier accuracy on generated vs real speech")
    p.add_argument("--run", required=True, metavar="RUN_DIR")
    p.add_argument("--per-label", type=int, default=20, help="generated clips per label (default 20)")
    p.add_argument("--griffin-lim-iters", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", metavar="REPORT.json")

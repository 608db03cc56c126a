"""``genchain train gpt --init smollm2|HF_DIR --lora r=8``: LoRA fine-tuning of a pretrained model.

``train gpt`` stays one command: with ``--lora``, or with an ``--init`` that is a pretrained transformers model,
it hands over to :func:`cmd_train_lora`. Full fine-tuning of a pretrained transformers model is not offered
(LoRA reaches the same copy quality here for a fraction of the memory and CPU time), so such an ``--init``
without ``--lora`` is an error that names the flag to add.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from genchain.errors import ConfigError


def add_lora_options(p: argparse.ArgumentParser) -> None:
    """Add the LoRA options to ``train gpt``."""
    p.add_argument("--lora", metavar="r=8[,alpha=16,dropout=0.05,targets=q_proj+v_proj]",
                   help="fine-tune the pretrained --init (smollm2 or a transformers dir) with LoRA adapters")
    p.add_argument("--merge", action="store_true",
                   help="with --lora: also write merged/, the base with the adapter folded in (a transformers dir)")


def wants_lora(args: argparse.Namespace) -> bool:
    """Whether this ``train gpt`` call fine-tunes a pretrained transformers model with LoRA: ``--lora`` is given,
    or ``--init`` is ``smollm2`` or a transformers directory (config.json, no genchain card)."""
    if getattr(args, "lora", None) is not None:
        return True
    init = getattr(args, "init", None)
    if init is None:
        if getattr(args, "merge", False):
            raise ConfigError("--merge goes with --lora (it merges the LoRA adapter into the base)")
        return False
    path = Path(init)
    return init == "smollm2" or ((path / "config.json").is_file() and not (path / "card.json").is_file())


def lora_overrides(spec: str) -> list[str]:
    """``r=8,alpha=16`` -> ``["lora.r=8", "lora.alpha=16"]`` (the config layer checks keys and values)."""
    pairs = [part.strip() for part in spec.split(",") if part.strip()]
    if not pairs:
        raise ConfigError("--lora needs settings, e.g. --lora r=8 or --lora r=16,alpha=32,targets=q_proj+v_proj")
    out = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--lora {pair!r} is not KEY=VALUE; keys: r, alpha, dropout, targets")
        out.append(f"lora.{key.strip()}={value.strip()}")
    return out


def cmd_train_lora(args: argparse.Namespace) -> None:
    """Fine-tune a pretrained causal LM with LoRA (the ``train gpt --lora`` path; see docs/copywriting.md)."""
    from genchain.train.lora import check_init, train_lora

    if args.init is None:
        raise ConfigError("--lora fine-tunes a pretrained model: add --init smollm2 or --init HF_MODEL_DIR")
    check_init(args.init)
    if args.lora is None:
        raise ConfigError(f"--init {args.init} is a pretrained transformers model; fine-tune it with LoRA by adding "
                          "--lora r=8 (full fine-tuning of transformers models is not offered)")
    overrides = lora_overrides(args.lora) + list(args.overrides or [])
    result = train_lora(args.init, args.data, args.out, args.config, overrides, resume=args.resume,
                        merge=args.merge)
    result.announce(args.out)

"""The texts a text evaluation measures: N samples drawn from a run dir, or read from any generator's .jsonl.

A GPT run (card family "text") samples from the start of a document (the end-of-text token for BPE, a blank
line for a character model, as ``genchain data prepare text`` separates documents) and each sample is cut at
the first document break, so a sample is one document, comparable with the reference's documents. A text-VAE
run (family "text-vae") decodes ``num`` latent draws. Samples are drawn in batches, each with its own seed
derived from ``seed``, so the same call gives the same texts.

A samples file holds one JSON object per line with a ``text`` field; other fields are kept, and ``generator``
(or ``run``) names the generator, else the file name does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from genchain import rundir
from genchain.data.tokens import DOC_SEPARATOR
from genchain.errors import InputError, RunDirError
from genchain.eval.samples_file import generator_name, read_sample_records


@dataclass
class Samples:
    """One generator's texts and where they came from."""

    name: str
    texts: list[str]
    origin: dict[str, Any] = field(default_factory=dict)  # run dir and sampling settings, or the file
    run_dir: Path | None = None
    family: str | None = None


@dataclass(frozen=True)
class SampleSettings:
    """How runs are sampled (GPT runs; a text VAE takes only the seed)."""

    num: int = 1000
    seed: int = 0
    max_new_tokens: int = 256
    temperature: float = 0.8
    top_k: int = 200
    top_p: float = 1.0
    batch_size: int = 50


def samples_from_run(run_dir: str | Path, settings: SampleSettings = SampleSettings()) -> Samples:
    """``settings.num`` samples from a GPT or text-VAE run dir."""
    run_dir = Path(run_dir)
    if settings.num < 2:
        raise InputError(f"--num must be at least 2 (self-BLEU and MAUVE compare samples), got {settings.num}")
    family = rundir.read_card(run_dir).get("family")
    if family == "text":
        texts = _gpt_samples(run_dir, settings)
        origin = {"run": str(run_dir), "family": family, "sampling": {
            k: getattr(settings, k) for k in ("num", "seed", "max_new_tokens", "temperature", "top_k", "top_p")}}
    elif family == "text-vae":
        from genchain.generate.text_vae import TextVAEGenerator

        texts = TextVAEGenerator.from_run(run_dir).sample(settings.num, seed=settings.seed)
        origin = {"run": str(run_dir), "family": family, "sampling": {"num": settings.num, "seed": settings.seed}}
    else:
        raise RunDirError(f"{run_dir} holds a {family!r} model; text evaluation takes GPT (text) or text-VAE runs")
    return Samples(run_dir.name or str(run_dir), texts, origin, run_dir, family)


def _gpt_samples(run_dir: Path, settings: SampleSettings) -> list[str]:
    from genchain.generate.text import SamplingConfig, TextGenerator

    generator = TextGenerator.from_run(run_dir)
    tokenizer = generator.tokenizer
    if tokenizer.eos_id is not None:
        prompt, stop = "", ()  # starts from <|endoftext|>; decoding of a sample stops at the next one
    else:
        prompt = DOC_SEPARATOR if "\n" in getattr(tokenizer, "chars", []) else ""
        stop = (DOC_SEPARATOR,) if prompt else ()
    texts: list[str] = []
    batches = range(0, settings.num, settings.batch_size)
    for index, start in enumerate(tqdm(batches, desc=f"sample {run_dir.name}", unit="batch", disable=None)):
        cfg = SamplingConfig(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                             top_k=settings.top_k, top_p=settings.top_p, stop=stop, seed=settings.seed + index)
        texts.extend(generator.generate(prompt, min(settings.batch_size, settings.num - start), cfg))
    return [t.strip() for t in texts]


def samples_from_jsonl(path: str | Path) -> Samples:
    """Samples written by any generator: one ``{"text": ...}`` object per line (blank lines are skipped)."""
    path = Path(path)
    records = read_sample_records(path)
    texts = [r["text"] for r in records]
    names = {name for r in records if (name := generator_name(r))}
    if len(texts) < 2:
        raise InputError(f"{path} holds {len(texts)} sample(s); text metrics need at least 2")
    name = names.pop() if len(names) == 1 else path.stem
    return Samples(name, texts, {"file": str(path)})

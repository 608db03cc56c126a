"""``genchain eval text``: every text metric for one or more generators, against one reference.

Each generator gets one result dict (lengths, distinct-n, self-BLEU, repetition, semantic diversity, MAUVE,
novelty, perplexity, and a run's learning curve); the reference passages get the same intrinsic metrics as a
baseline row. All generators share the unit (word or char), the reference passages and their embeddings, so
their figures compare. Perplexity uses ``scorer`` for every generator when given; otherwise a GPT run scores
its own samples and other generators get none (a note says why).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from genchain import rundir
from genchain.eval import text as metrics
from genchain.eval.text_reference import Reference, reference_passages
from genchain.eval.text_samples import Samples

FEATURES = "all-MiniLM-L6-v2 sentence embeddings (mean pooling, unit length), not GPT-2-large"


@dataclass(frozen=True)
class TextEvalOptions:
    unit: str = "auto"
    seed: int = 0
    mauve: bool = True
    semantic: bool = True
    device: str = "auto"


def intrinsic(texts: Sequence[str], unit: str) -> dict[str, Any]:
    """The metrics that need nothing but the texts."""
    tokens = [metrics.tokenize(t, unit) for t in texts]
    result: dict[str, Any] = {"num": len(texts), "length": metrics.length_stats([len(t) for t in tokens]),
                              "lengths": [len(t) for t in tokens]}
    for n in (1, 2, 3):
        result[f"distinct_{n}"] = metrics.distinct_n(tokens, n)
    result["self_bleu"] = metrics.self_bleu(texts, unit)
    result.update(metrics.repetition(tokens, 4))
    return result


def _embed(texts: Sequence[str], desc: str) -> np.ndarray:
    from genchain.data.embed import default_embedder

    embedder = default_embedder()
    chunks = [list(texts[i:i + 256]) for i in range(0, len(texts), 256)]
    parts = [embedder.embed(chunk) for chunk in tqdm(chunks, desc=f"embed {desc}", unit="batch", disable=None)]
    return np.concatenate(parts) if parts else np.zeros((0, embedder.dimension), np.float32)


def learning_curve(run_dir: Path) -> dict[str, list[list[float]]]:
    """``{metric: [[iter, value], ...]}`` from a run's metrics.jsonl: train loss and every eval key."""
    path = run_dir / rundir.METRICS
    curves: dict[str, list[list[float]]] = {}
    if not path.is_file():
        return curves
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash mid-write: the rest of the curve still plots
        for key, value in row.items():
            if key in ("kind", "iter", "time") or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            if row.get("kind") == "train" and key != "loss":
                continue  # throughput and learning-rate figures are not learning curves
            name = "train_loss" if row.get("kind") == "train" else key
            curves.setdefault(name, []).append([row.get("iter", 0), value])
    return curves


def evaluate_text(generators: Sequence[Samples], reference: Reference | None, scorer: str | Path | None = None,
                  options: TextEvalOptions = TextEvalOptions()) -> dict[str, Any]:
    """Measure every generator; returns ``{"unit", "reference", "generators": [...], "notes"}``."""
    from genchain.eval.novelty import ReferenceIndex
    from genchain.eval.scorer import gpt_scorer, load_scorer

    all_texts = [t for g in generators for t in g.texts]
    unit = metrics.resolve_unit(options.unit, all_texts)
    notes = [f"n-gram unit: {unit}", "self-BLEU: each sample against all other samples of its generator (exact)"]
    report: dict[str, Any] = {"unit": unit, "reference": None, "generators": [], "notes": notes}
    # 1. the reference: an index of every document, and passages cut to the samples' length
    index = ref_embeddings = None
    if reference is not None:
        index = ReferenceIndex(reference.documents, unit, names=reference.names)
        target = int(np.median([len(t) for t in all_texts])) if all_texts else 200
        passages = reference_passages(reference, max(len(g.texts) for g in generators), target, options.seed)
        report["reference"] = {"source": reference.source, "documents": len(reference.documents),
                               "units": index.units, "passages": intrinsic(passages, unit),
                               "passage_examples": passages[:5]}
        notes.append(f"reference passages: {len(passages)} pieces of about {target} characters")
        if options.mauve or options.semantic:
            ref_embeddings = _embed(passages, "reference")
            if options.semantic:
                cosine = metrics.mean_pairwise_cosine(ref_embeddings)
                report["reference"]["passages"].update(mean_pairwise_cosine=cosine, semantic_diversity=1 - cosine)
    if reference is None:
        notes.append("no reference: MAUVE and novelty were not measured (pass --reference)")
    elif options.mauve:
        notes.append(f"MAUVE features: {FEATURES}")
    shared_scorer = load_scorer(scorer, options.device) if scorer else None
    # 2. each generator
    for gen in generators:
        result: dict[str, Any] = {"name": gen.name, **gen.origin, **intrinsic(gen.texts, unit)}
        if options.semantic or (options.mauve and ref_embeddings is not None):
            embeddings = _embed(gen.texts, gen.name)
            if options.semantic:
                cosine = metrics.mean_pairwise_cosine(embeddings)
                result.update(mean_pairwise_cosine=cosine, semantic_diversity=1 - cosine)
            if options.mauve and ref_embeddings is not None:
                result["mauve"] = metrics.mauve_score(embeddings, ref_embeddings, seed=options.seed + 25)
        if index is not None:
            result["novelty"] = index.check(gen.texts)
        if shared_scorer is not None:
            result["perplexity"] = shared_scorer.perplexity(gen.texts)
        elif gen.family == "text" and gen.run_dir is not None:
            result["perplexity"] = gpt_scorer(gen.run_dir, options.device).perplexity(gen.texts)
        else:
            result["perplexity"] = {"scorer": None, "perplexity": None,
                                    "note": "no scorer: pass --scorer RUN_DIR|HF_DIR to score this generator"}
        if gen.run_dir is not None:
            result["learning_curve"] = learning_curve(gen.run_dir)
        result["examples"] = gen.texts[:5]
        report["generators"].append(result)
    return report


def summary_rows(report: dict[str, Any]) -> list[tuple[str, dict[str, float | None]]]:
    """The table of headline figures: one row per generator, then the reference passages."""
    rows = []
    for gen in report["generators"]:
        novelty = gen.get("novelty") or {}
        orders = novelty.get("orders", {})
        rows.append((gen["name"], {
            "ppl": gen["perplexity"].get("perplexity"), "distinct_1": gen["distinct_1"],
            "distinct_2": gen["distinct_2"], "distinct_3": gen["distinct_3"], "self_bleu": gen["self_bleu"],
            "seq_rep_4": gen["seq_rep_4"], "sem_div": gen.get("semantic_diversity"), "mauve": gen.get("mauve"),
            "copied_8": orders.get("8", {}).get("copied_share"), "copied_13": orders.get("13", {}).get("copied_share"),
            "longest": novelty.get("longest_span", {}).get("max"), "len_mean": gen["length"]["mean"],
        }))
    if report["reference"] is not None:
        ref = report["reference"]["passages"]
        rows.append(("reference", {
            "ppl": None, "distinct_1": ref["distinct_1"], "distinct_2": ref["distinct_2"],
            "distinct_3": ref["distinct_3"], "self_bleu": ref["self_bleu"], "seq_rep_4": ref["seq_rep_4"],
            "sem_div": ref.get("semantic_diversity"), "mauve": None, "copied_8": None, "copied_13": None,
            "longest": None, "len_mean": ref["length"]["mean"],
        }))
    return rows


def format_table(report: dict[str, Any]) -> str:
    rows = summary_rows(report)
    columns = list(rows[0][1]) if rows else []
    width = max([len(name) for name, _ in rows] + [9])
    lines = [f"{'generator':{width}s} " + " ".join(f"{c:>10s}" for c in columns)]
    for name, values in rows:
        cells = []
        for column in columns:
            value = values[column]
            cells.append(f"{'-':>10s}" if value is None else f"{value:>10.0f}" if column == "longest"
                         else f"{value:>10.2f}" if column in ("ppl", "len_mean") else f"{value:>10.4f}")
        lines.append(f"{name:{width}s} " + " ".join(cells))
    return "\n".join(lines)

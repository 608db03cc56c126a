"""The text-evaluation report: one self-contained HTML file (plots are inline base64 PNGs, no scripts, no CDN).

It shows the table of headline metrics, one bar chart per metric with a bar per generator (and the reference
passages where the metric applies to them), length histograms, each run's learning curves from its
``metrics.jsonl``, the longest spans copied from the reference, and a few samples. Every text from a
generator or the reference is HTML-escaped: samples are untrusted input.
"""

from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path
from typing import Any

from genchain.eval.text_eval import summary_rows
from genchain.fileio import atomic_write_text

BARS = (("ppl", "perplexity (lower: scorer finds it likelier)"), ("distinct_2", "distinct-2 (higher: more varied)"),
        ("self_bleu", "self-BLEU (lower: more varied)"), ("seq_rep_4", "seq-rep-4 (lower: less looping)"),
        ("sem_div", "semantic diversity (1 - mean cosine)"), ("mauve", "MAUVE vs reference (higher: closer)"),
        ("copied_13", "13-gram copied share (lower: less memorised)"), ("longest", "longest copied span (units)"))
_STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}td.l{text-align:left}pre{white-space:pre-wrap;background:#f7f7f7;padding:6px;
border-left:3px solid #9ab;font-size:13px}img{max-width:100%}.note{color:#666;font-size:13px}"""


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode("ascii")}">'


def _metric_bars(rows: list[tuple[str, dict[str, float | None]]]) -> str:
    import matplotlib.pyplot as plt

    shown = [(key, title) for key, title in BARS if any(values.get(key) is not None for _, values in rows)]
    if not shown:
        return ""
    columns = 4
    fig, axes = plt.subplots((len(shown) + columns - 1) // columns, columns, squeeze=False,
                             figsize=(3.6 * columns, 2.8 * ((len(shown) + columns - 1) // columns)))
    for ax, (key, title) in zip(axes.flat, shown, strict=False):
        names = [name for name, values in rows if values.get(key) is not None]
        heights = [values[key] for _, values in rows if values.get(key) is not None]
        bars = ax.bar(range(len(names)), heights, color=["#7a9" if n == "reference" else "#58b" for n in names])
        ax.bar_label(bars, fmt="%.3g", fontsize=7)
        ax.set_ylim(0, max(heights) * 1.15 if max(heights) > 0 else 1)  # all zero: still a readable axis
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.tight_layout()
    return _png(fig)


def _length_histograms(report: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    series = [(g["name"], g["lengths"]) for g in report["generators"]]
    if report["reference"] is not None:
        series.append(("reference passages", report["reference"]["passages"]["lengths"]))
    top = max((max(lengths) for _, lengths in series if lengths), default=1)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for name, lengths in series:
        ax.hist(lengths, bins=40, range=(0, top + 1), histtype="step", linewidth=1.5, density=True, label=name)
    ax.set_xlabel(f"length ({report['unit']}s)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return _png(fig)


def _learning_curves(report: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    runs = [g for g in report["generators"] if g.get("learning_curve")]
    if not runs:
        return '<p class="note">No run dirs with a metrics.jsonl among the generators.</p>'
    fig, axes = plt.subplots(1, len(runs), squeeze=False, figsize=(5 * len(runs), 3.3))
    for ax, gen in zip(axes.flat, runs, strict=True):
        for key, points in gen["learning_curve"].items():
            ax.plot([p[0] for p in points], [p[1] for p in points], label=key, marker="." if len(points) < 30 else "")
        ax.set_title(gen["name"], fontsize=10)
        ax.set_xlabel("iteration")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _table(rows: list[tuple[str, dict[str, float | None]]]) -> str:
    if not rows:
        return ""
    columns = list(rows[0][1])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for name, values in rows:
        cells = "".join("<td>-</td>" if values[c] is None else f"<td>{values[c]:.4g}</td>" for c in columns)
        body.append(f'<tr><td class="l">{html.escape(name)}</td>{cells}</tr>')
    return f"<table><tr><th>generator</th>{head}</tr>{''.join(body)}</table>"


def _copied_spans(report: dict[str, Any], limit: int = 10) -> str:
    spans = [(g["name"], s) for g in report["generators"] for s in (g.get("novelty") or {}).get("spans", [])]
    spans = sorted((x for x in spans if x[1]["length"] > 0), key=lambda x: -x[1]["length"])[:limit]
    if not spans:
        return '<p class="note">No copied span (or no reference given).</p>'
    rows = "".join(
        f'<tr><td class="l">{html.escape(name)}</td><td>{s["sample"]}</td><td>{s["length"]}</td>'
        f'<td class="l">{html.escape(s["text"])}</td><td class="l">{html.escape(str(s["document_name"]))} '
        f'@ {s["offset"]}</td></tr>' for name, s in spans)
    return ("<table><tr><th>generator</th><th>sample</th><th>length</th><th>copied text</th>"
            f"<th>where in the reference</th></tr>{rows}</table>")


def _examples(report: dict[str, Any]) -> str:
    parts = []
    for gen in report["generators"]:
        parts.append(f"<h3>{html.escape(gen['name'])}</h3>")
        parts.extend(f"<pre>{html.escape(text) or '(empty)'}</pre>" for text in gen["examples"])
    if report["reference"] is not None:
        parts.append("<h3>reference passages</h3>")
        parts.extend(f"<pre>{html.escape(text)}</pre>" for text in report["reference"]["passage_examples"][:3])
    return "".join(parts)


def render_report(report: dict[str, Any]) -> str:
    """The whole HTML page for ``report`` (what :func:`genchain.eval.text_eval.evaluate_text` returns)."""
    import matplotlib

    matplotlib.use("Agg")
    rows = summary_rows(report)
    reference = report["reference"]
    ref_line = (f"{html.escape(reference['source'])}: {reference['documents']:,} documents, {reference['units']:,} "
                f"{report['unit']}s" if reference else "none given: no MAUVE, no novelty")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report["notes"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>genchain text evaluation</title><style>{_STYLE}</style></head>
<body><h1>Text evaluation</h1>
<p>{time.strftime('%Y-%m-%d %H:%M')} &middot; reference: {ref_line}</p><ul class="note">{notes}</ul>
<h2>Metrics</h2>{_table(rows)}
<p class="note">distinct-n: unique/total n-grams; self-BLEU: sacrebleu BLEU of each sample against the others;
seq-rep-4: repeated 4-grams within a sample; sem_div: 1 - mean pairwise cosine of MiniLM embeddings; MAUVE on
those embeddings; copied_8/13: share of generated 8-/13-grams found verbatim in the reference; longest: the
longest copied span. Definitions and sources: docs/evaluation.md.</p>
{_metric_bars(rows)}
<h2>Length distributions</h2>{_length_histograms(report)}
<h2>Learning curves</h2>{_learning_curves(report)}
<h2>Longest copied spans</h2>{_copied_spans(report)}
<h2>Samples</h2>{_examples(report)}
</body></html>
"""


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    atomic_write_text(path, render_report(report))
    return Path(path)

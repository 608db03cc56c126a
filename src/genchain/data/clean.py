"""``genchain data clean``: a dataset in, a filtered, deduplicated and redacted dataset out, every removal counted.

Text rows go through, in order: (1) normalisation (:func:`genchain.data.quality.normalize_text`), (2) the
quality rules that were asked for (:mod:`genchain.data.quality`), (3) the language filter, (4) PII redaction
(:mod:`genchain.data.pii`), (5) deduplication. Image rows are decoded (undecodable ones are dropped) and
deduplicated by their pixels and, for near duplicates, their perceptual hash, which survives re-encoding,
resizing and mild noise but not crops. Audio rows are decoded, checked against the duration limits and
deduplicated by their samples.

Deduplication keeps the first occurrence and runs across splits in dataset order (train, validation, test),
so a test row that repeats a training row is removed from test: evaluating on training data would overstate
every score. Exact dedup happens on the fly; near dedup needs every key before it can decide, so the survivors
of the first pass are staged in a temporary dataset beside the output and copied minus the near duplicates.

Every row's own work (normalisation, rules, language, redaction, decoding, dedup keys) is a pure function of the
row (:meth:`_RowCleaner.inspect`), so it can run on any executor (:mod:`genchain.data.executor`: this process,
or Dask workers); what depends on earlier rows -- exact dedup's first occurrence, the counts, near dedup's LSH
and clusters -- is decided here, in dataset order (:meth:`_RowCleaner.decide`). A distributed run therefore
writes the same dataset as a local one, row for row.

The input is only read. Nothing appears at the output path unless the whole run succeeds; a run that would
remove every row raises :class:`InputError` instead of writing an empty dataset. The manifest step ``clean``
counts rows removed by each rule (a row is counted once, under the first rule it failed), rows changed by
normalisation, redacted entities by type (in rows that passed exact dedup), and rows in and out per split.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from genchain.data.dataset import Dataset, DatasetWriter, make_step, open_dataset
from genchain.data.dedup import (
    ExactDeduplicator,
    NearDedupConfig,
    find_image_near_duplicates,
    find_near_duplicates,
    image_phash,
    text_key,
)
from genchain.data.executor import open_executor
from genchain.data.media import decode_audio, decode_image
from genchain.data.pii import RedactionResult, redact
from genchain.data.quality import LanguageFilter, QualityConfig, normalize_text, quality_reasons
from genchain.errors import InputError

DEDUP_METHODS = ("exact", "near")


def clean(dataset: str | Path, out_dir: str | Path, *, dedup: tuple[str, ...] = ("exact",),
          near_threshold: float = 0.8, redact_pii: bool = False, min_chars: int | None = None,
          max_chars: int | None = None, max_symbol_ratio: float | None = None, max_repeat_ratio: float | None = None,
          lang: tuple[str, ...] = (), image_max_distance: int = 4, min_seconds: float | None = None,
          max_seconds: float | None = None, overwrite: bool = False,
          quality: QualityConfig | None = None, executor: str = "local", workers: int | None = None,
          scheduler: str | None = None) -> dict[str, Any]:
    """Write a cleaned copy of ``dataset`` to ``out_dir`` and return its manifest.

    Args:
        dataset: the dataset directory to read (never modified).
        out_dir: where the cleaned dataset goes.
        dedup: any of "exact" and "near"; () for none.
        near_threshold: MinHash Jaccard similarity at or above which texts are near duplicates.
        redact_pii: replace e-mails, phone numbers, cards, IPs and Chinese IDs by typed placeholders (text).
        min_chars, max_chars, max_symbol_ratio, max_repeat_ratio: quality-rule thresholds (text); see
            :meth:`QualityConfig.with_flags`. Each one given turns its rule on.
        lang: keep only texts in these languages (ISO 639-1 codes); () keeps all.
        image_max_distance: pHash Hamming distance within which images are near duplicates.
        min_seconds, max_seconds: audio duration limits.
        overwrite: replace an existing dataset at ``out_dir``.
        quality: a base set of rule thresholds (e.g. :func:`genchain.data.quality.gopher`); the flags above
            override its fields.
        executor: ``local`` or ``dask``: where the per-row work runs (the output is the same).
        workers: Dask worker processes on this machine (default one per core); also the processes near dedup
            computes its MinHash signatures with.
        scheduler: a running Dask scheduler's address, instead of local workers.

    Raises:
        InputError: an option that does not fit the dataset, or nothing left to write.
    """
    started = time.time()
    source = open_dataset(dataset)
    out_dir = Path(out_dir)
    if out_dir.resolve() == source.path.resolve():
        raise InputError(f"clean writes a new dataset; choose an output other than the input {source.path}")
    flags = {"min_chars": min_chars, "max_chars": max_chars, "max_symbol_ratio": max_symbol_ratio,
             "max_repeat_ratio": max_repeat_ratio}
    _check_options(source.modality, dedup, flags, redact_pii=redact_pii, lang=lang, quality=quality,
                   min_seconds=min_seconds, max_seconds=max_seconds, image_max_distance=image_max_distance)
    near_config = NearDedupConfig(threshold=near_threshold) if "near" in dedup else None
    exact = "exact" in dedup
    rules = None
    if source.modality == "text":
        rules = (quality or QualityConfig()).with_flags(**flags)
        cleaner: _RowCleaner = _TextCleaner(rules, LanguageFilter(lang) if lang else None, redact_pii, exact)
    elif source.modality == "image":
        cleaner = _ImageCleaner(exact)
    else:
        cleaner = _AudioCleaner(min_seconds, max_seconds, exact)

    params = {"dedup": list(dedup), "near_threshold": near_threshold if near_config else None,
              "redact_pii": redact_pii, **flags, "lang": list(lang),
              "image_max_distance": image_max_distance if source.modality == "image" and near_config else None,
              "min_seconds": min_seconds, "max_seconds": max_seconds, "quality": asdict(rules) if rules else None}
    rows_in = {split: source.num_rows(split) for split in source.splits}
    with DatasetWriter(out_dir, source.modality, source.features, overwrite=overwrite) as writer, \
            open_executor(executor, workers, scheduler) as runner:
        for split in source.splits:  # a split that loses every row stays, empty, so the layout is kept
            writer.add_batch(pa.RecordBatch.from_pylist([], schema=writer.schema), split)
        if near_config is None:
            _first_pass(source, cleaner, writer, runner)
        else:
            _two_passes(source, cleaner, writer, near_config, image_max_distance, runner)
        rows_out = writer.rows()
        removed = cleaner.removed
        if not sum(rows_out.values()):
            top = ", ".join(f"{n} {reason}" for reason, n in removed.most_common(3))
            raise InputError(f"all {source.num_rows()} rows were removed: {top}; loosen those thresholds or "
                             "options and run again")
        for split, n in rows_out.items():
            if n == 0:
                warnings.warn(f"split {split!r} lost all its {rows_in[split]} rows in cleaning", stacklevel=2)
        cleaner.warn_undecodable()
        counts: dict[str, Any] = {"removed": dict(removed), **cleaner.extra_counts(),
                                  "per_split": {s: {"rows_in": rows_in[s], "rows_out": rows_out[s]}
                                                for s in source.splits}}
        step = make_step("clean", params, rows_in=source.num_rows(), rows_out=sum(rows_out.values()),
                         started=started, counts=counts, packages=cleaner.packages)
        return writer.close(source.derived_manifest(step))


def _check_options(modality: str, dedup: tuple[str, ...], flags: dict[str, Any], *, redact_pii: bool,
                   lang: tuple[str, ...], quality: QualityConfig | None, min_seconds: float | None,
                   max_seconds: float | None, image_max_distance: int) -> None:
    unknown = [d for d in dedup if d not in DEDUP_METHODS]
    if unknown:
        raise InputError(f"unknown dedup method(s) {', '.join(unknown)}; use exact, near or both (exact,near)")
    text_options = [name for name, v in {**flags, "redact_pii": redact_pii, "lang": lang, "quality": quality}.items()
                    if v not in (None, False, ())]
    if modality != "text" and text_options:
        raise InputError(f"{', '.join(text_options)} apply to text datasets only; this one holds {modality}")
    audio_options = [name for name, v in {"min_seconds": min_seconds, "max_seconds": max_seconds}.items()
                     if v is not None]
    if modality != "audio" and audio_options:
        raise InputError(f"{', '.join(audio_options)} apply to audio datasets only; this one holds {modality}")
    if modality == "audio" and "near" in dedup:
        raise InputError("near dedup is for text and images; use --dedup exact for audio")
    if modality == "image" and "near" in dedup and not 0 <= image_max_distance < 64:
        raise InputError(f"--image-max-distance {image_max_distance} must be between 0 and 63 bits")
    for low, high, what in ((flags["min_chars"], flags["max_chars"], "chars"), (min_seconds, max_seconds, "seconds")):
        if low is not None and high is not None and low > high:
            raise InputError(f"--min-{what} {low} is above --max-{what} {high}; nothing could pass")
    for name in ("max_symbol_ratio", "max_repeat_ratio"):
        if flags[name] is not None and not 0 <= flags[name] <= 1:
            raise InputError(f"--{name.replace('_', '-')} {flags[name]} must be a fraction between 0 and 1")


# --------------------------------------------------------------------------------------------------- passes
def _inspect_batch(batch: pa.RecordBatch, cleaner: _RowCleaner) -> list[_Verdict]:
    """One partition's rows through :meth:`_RowCleaner.inspect` (what an executor's worker runs)."""
    return [cleaner.inspect(row) for row in batch.to_pylist()]


def _phash_batch(batch: pa.RecordBatch) -> list[int]:
    return [image_phash(image["bytes"]) for image in batch.column(0).to_pylist()]


def _first_pass(source: Dataset, cleaner: _RowCleaner, writer: DatasetWriter, runner: Any) -> None:
    """Every row inspected (on the executor), then decided here in dataset order; survivors go to ``writer``."""
    splits: list[str] = []

    def partitions() -> Iterator[pa.RecordBatch]:
        for split, batch in source.batches():
            splits.append(split)
            yield batch

    with tqdm(total=source.num_rows(), desc="clean", unit=" rows", leave=False, disable=None) as bar:
        for number, verdicts in enumerate(runner.map(_inspect_batch, partitions(), cleaner)):
            for verdict in verdicts:
                if cleaner.decide(verdict):
                    writer.add(verdict.row, splits[number])
            bar.update(len(verdicts))


def _two_passes(source: Dataset, cleaner: _RowCleaner, writer: DatasetWriter, config: NearDedupConfig,
                image_max_distance: int, runner: Any) -> None:
    """The first pass into a staging dataset, then its rows minus near duplicates into ``writer``."""
    workdir = Path(tempfile.mkdtemp(prefix=f".{writer.out_dir.name}.clean-", dir=writer.out_dir.parent))
    try:
        with DatasetWriter(workdir / "stage", source.modality, source.features) as stage_writer:
            _first_pass(source, cleaner, stage_writer, runner)
            stage_writer.close({})
        stage = open_dataset(workdir / "stage")
        progress = sys.stderr.isatty()
        if source.modality == "text":  # signatures in parallel processes; LSH and clusters once, here
            texts = (t for _, b in stage.batches(columns=["text"]) for t in b.column(0).to_pylist())
            duplicate = find_near_duplicates(texts, config, workdir=workdir / "near", progress=progress,
                                             workers=runner.workers)
        else:
            batches = (b for _, b in stage.batches(columns=["image"]))
            hashes = (h for part in runner.map(_phash_batch, batches) for h in part)
            duplicate = find_image_near_duplicates(hashes, image_max_distance)
        if duplicate.any():
            cleaner.removed["near_duplicate"] += int(duplicate.sum())
        position = 0
        for split, batch in stage.batches():
            keep = ~duplicate[position:position + batch.num_rows]
            position += batch.num_rows
            writer.add_batch(batch.filter(pa.array(keep)), split)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------------------------------- cleaners
@dataclass
class _Verdict:
    """What :meth:`_RowCleaner.inspect` found out about one row, before any cross-row decision."""

    reason: str | None  # the first rule the row failed, or None
    key: bytes | None  # its exact-dedup key when it passed
    row: dict[str, Any]  # the row as it would be written (text normalised and redacted)
    stats: dict[str, Any] = field(default_factory=dict)  # what the counts need from this row


class _RowCleaner:
    """Inspects one row at a time (a pure function, so it can run anywhere), then decides in dataset order;
    counts why rows were removed."""

    packages: tuple[str, ...] = ()

    def __init__(self, exact: bool):
        self.removed: Counter = Counter()
        self.exact = ExactDeduplicator() if exact else None
        self.undecodable: list[str] = []

    def inspect(self, row: dict[str, Any]) -> _Verdict:
        raise NotImplementedError

    def decide(self, verdict: _Verdict) -> bool:
        """Exact dedup (the first occurrence in dataset order wins) and the counts; True to keep the row."""
        reason = verdict.reason
        if reason is None and self.exact is not None and not self.exact.is_new(verdict.key):
            reason = "exact_duplicate"
        self.tally(verdict, kept=reason is None)
        if reason:
            self.removed[reason] += 1
        return reason is None

    def tally(self, verdict: _Verdict, kept: bool) -> None:
        if "undecodable" in verdict.stats:
            self.undecodable.append(verdict.stats["undecodable"])

    def extra_counts(self) -> dict[str, Any]:
        return {}

    def warn_undecodable(self) -> None:
        if self.undecodable:
            shown = ", ".join(self.undecodable[:5]) + (" ..." if len(self.undecodable) > 5 else "")
            warnings.warn(f"{len(self.undecodable)} rows could not be decoded and were dropped (ids: {shown})",
                          stacklevel=3)


class _TextCleaner(_RowCleaner):
    packages = ("py3langid", "phonenumbers", "datasketch")

    def __init__(self, quality: QualityConfig, languages: LanguageFilter | None, redact_pii: bool, exact: bool):
        super().__init__(exact)
        self.quality, self.languages, self.redact_pii = quality, languages, redact_pii
        self.normalised = 0
        self.redacted: Counter = Counter()
        self.undetermined_language = 0

    def inspect(self, row: dict[str, Any]) -> _Verdict:
        text = normalize_text(row["text"] or "")
        stats: dict[str, Any] = {"normalised": text != row["text"]}
        failed = quality_reasons(text, self.quality)
        if failed:
            return _Verdict(failed[0], None, row, stats)
        if self.languages is not None:
            keep, language = self.languages.keep(text)
            if not keep:
                return _Verdict(f"lang:{language}", None, row, stats)
            stats["undetermined"] = language == "und"
        redacted = redact(text) if self.redact_pii else RedactionResult(text)
        stats["redacted"] = dict(redacted.counts)
        return _Verdict(None, text_key(redacted.text), {**row, "text": redacted.text}, stats)

    def tally(self, verdict: _Verdict, kept: bool) -> None:
        self.normalised += verdict.stats["normalised"]
        self.undetermined_language += verdict.stats.get("undetermined", False)
        if kept:  # entities are counted in rows that passed exact dedup
            self.redacted.update(verdict.stats["redacted"])

    def extra_counts(self) -> dict[str, Any]:
        counts: dict[str, Any] = {"changed": {"normalised": self.normalised, "redacted": dict(self.redacted)}}
        if self.languages is not None:
            counts["kept_undetermined_language"] = self.undetermined_language
        return counts


class _ImageCleaner(_RowCleaner):
    packages = ("pillow", "imagehash")

    def inspect(self, row: dict[str, Any]) -> _Verdict:
        try:
            image = decode_image(row["image"]["bytes"], f"image {row['id']}")
        except InputError:
            return _Verdict("corrupt", None, row, {"undecodable": row["id"]})
        key = hashlib.sha256(f"{image.mode} {image.size}".encode() + image.tobytes()).digest()[:16]
        return _Verdict(None, key, row)


class _AudioCleaner(_RowCleaner):
    packages = ("soundfile",)

    def __init__(self, min_seconds: float | None, max_seconds: float | None, exact: bool):
        super().__init__(exact)
        self.min_seconds, self.max_seconds = min_seconds, max_seconds

    def inspect(self, row: dict[str, Any]) -> _Verdict:
        try:
            samples, rate = decode_audio(row["audio"]["bytes"], f"audio {row['id']}")
        except InputError:
            return _Verdict("corrupt", None, row, {"undecodable": row["id"]})
        seconds = samples.size / rate
        if self.min_seconds is not None and seconds < self.min_seconds:
            return _Verdict("too_short", None, row)
        if self.max_seconds is not None and seconds > self.max_seconds:
            return _Verdict("too_long", None, row)
        key = hashlib.sha256(np.int64(rate).tobytes() + samples.tobytes()).digest()[:16]
        return _Verdict(None, key, row)

"""``genchain data ingest``: raw files (text, images or audio) into a dataset directory, streaming.

What it reads: files, directories (searched recursively, in sorted order, for the kind's file types), glob
patterns (expanded here, so quoting them on the command line works) and, for text, ``builtin:NAME`` corpora.
The layouts ``genchain data get`` writes need nothing more: IDX image/label pairs (MNIST, Fashion-MNIST),
``train/<class>/<n>.png`` trees, ``<category>/fortunes.jsonl`` and ``<digit>/<name>.wav``.

Splits: when every top-level sub-directory of a source directory is a split name (train, validation or val,
test), the rows below each go to that split; IDX files name theirs in their prefix (``train-``, ``t10k-``);
everything else is ``train``. Labels: ``--label-from dirname`` takes the name of the file's parent directory
(below any split directory), ``--label-from csv:FILE`` looks each file up in a CSV of file,label, and IDX files
bring their paired ``-labels-idx1-`` file (class names from ``classes.txt`` beside them). Label names become a
``ClassLabel`` in sorted order (numeric order when they are all numbers, so class ``7`` is label 7); IDX keeps
its own order. When a dataset has labels, rows without one are skipped and counted.

Rows go to :class:`~genchain.data.dataset.DatasetWriter` as they are read, so nothing is held in memory but the
file at hand. A corrupt file is a warning and a count in the manifest, never a crash; a dataset with no rows
at all is an error and leaves nothing behind. Ids are a running index (``00000000``...) unique across splits.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from genchain.data.dataset import MODALITIES, PAYLOAD_COLUMN, DatasetWriter, base_features, make_step
from genchain.data.readers import UNITS, utf8_lines
from genchain.data.sources import BUILTIN_PREFIX, Document, read_builtin
from genchain.errors import InputError
from genchain.fileio import sha256_file

SPLIT_DIRS = {"train": "train", "validation": "validation", "val": "validation", "test": "test"}
SOURCE_RECORD = "SOURCE.json"
USER_LICENCE = "unknown (user data)"
CSV_FILE_COLUMNS = ("file", "path", "filename")
COUNTS = ("files", "skipped_corrupt", "skipped_empty", "skipped_unlabelled")


@dataclass
class Item:
    """One row's worth of data from a reader; ``label`` and ``split`` are set only by files that carry them."""

    source: str
    payload: Any
    label: str | None = None
    split: str | None = None


class Reader(Protocol):
    """What ingest needs from a kind's reader (``ingest_text``, ``ingest_image``, ``ingest_audio``)."""

    description: str
    packages: tuple[str, ...]
    counts: Counter

    def accepts(self, path: Path) -> bool: ...
    def items(self, path: Path) -> Iterator[Item]: ...
    def label_names(self, paths: list[Path]) -> list[str] | None: ...
    def params(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class InputFile:
    """A file to read, with what its place in the source tree says about it."""

    path: Path
    relative: str  # below its source directory (or as given): the key a labels CSV is matched on
    split: str
    class_dir: str | None  # the parent directory's name, when there is one below the source and split dirs


@dataclass
class SourceGroup:
    """One command-line source: its manifest entry and the files (or built-in documents) it stands for."""

    entry: dict[str, Any]
    files: list[InputFile] = field(default_factory=list)
    documents: list[Document] = field(default_factory=list)


def ingest(sources: list[str], out_dir: Path, *, kind: str, label_from: str | None = None, text_field: str = "text",
           unit: str = "file", image_size: int | None = None, image_mode: str | None = None,
           sampling_rate: int = 16000, overwrite: bool = False) -> dict[str, Any]:
    """Read ``sources`` into a new ``kind`` dataset at ``out_dir`` and return its manifest.

    Args:
        sources: files, directories, glob patterns, or ``builtin:NAME`` (text).
        out_dir: the dataset directory to create; an existing one is replaced only with ``overwrite``.
        kind: ``text``, ``image`` or ``audio``.
        label_from: ``dirname``, ``csv:FILE`` or None (no labels, except those IDX files carry).
        text_field: the JSONL field / CSV or Parquet column holding the text.
        unit: what one .txt/.md document is: the whole ``file``, each ``line`` or each ``paragraph``.
        image_size: resize the short side and centre-crop to this many pixels square.
        image_mode: ``L`` or ``RGB``; by default the first image's (grey stays grey, anything else is RGB).
        sampling_rate: audio is mixed to mono and resampled to this rate in Hz.
        overwrite: replace an existing dataset at ``out_dir``.
    """
    started = time.time()
    out_dir = Path(out_dir)
    if kind not in MODALITIES:
        raise InputError(f"unknown kind {kind!r}; use one of {', '.join(MODALITIES)}")
    if unit not in UNITS:
        raise InputError(f"unknown unit {unit!r}; use one of {', '.join(UNITS)}")
    if not sources:
        raise InputError("no sources given; name files, directories or glob patterns to ingest")
    if out_dir.exists() and not overwrite:  # checked again by the writer; here so no reading is wasted
        raise InputError(f"{out_dir} already exists; pass --overwrite or choose another directory")
    reader = _make_reader(kind, text_field=text_field, unit=unit, image_size=image_size, image_mode=image_mode,
                          sampling_rate=sampling_rate)
    groups = [_resolve(spec, kind, reader) for spec in sources]
    files = [f for g in groups for f in g.files]
    file_labels, names = _labels(label_from, kind, files, reader)
    features = base_features(kind, labels=names, sampling_rate=sampling_rate if kind == "audio" else None)
    label_index = {name: i for i, name in enumerate(names or [])}
    counts: Counter = Counter()
    hashes: dict[Path, str] = {}
    payload = PAYLOAD_COLUMN[kind]
    rows = 0
    with DatasetWriter(out_dir, kind, features, overwrite=overwrite) as writer:
        for item in _stream(groups, reader, file_labels, hashes):
            if names is not None and item.label is None:
                counts["skipped_unlabelled"] += 1
                continue
            row = {"id": f"{rows:08d}", "source": item.source, payload: item.payload}
            if names is not None:
                row["label"] = label_index[item.label]
            writer.add(row, split=item.split or "train")
            rows += 1
        counts.update(reader.counts)
        counts["files"] = len(files)
        if rows == 0:
            raise InputError(f"nothing was ingested from {', '.join(sources)} ({_describe(counts)}); "
                             "check the sources and --kind")
        if counts["skipped_unlabelled"]:
            warnings.warn(f"{counts['skipped_unlabelled']} rows had no label and were skipped "
                          f"(label from {label_from or 'IDX label files'})", stacklevel=2)
        params = {"kind": kind, "label_from": label_from, "text_field": text_field, "unit": unit,
                  "image_size": image_size, "image_mode": image_mode, "sampling_rate": sampling_rate,
                  **reader.params()}
        step = make_step("ingest", params, rows_in=None, rows_out=rows, started=started,
                         counts={**{k: counts[k] for k in COUNTS}, **counts}, packages=reader.packages)
        return writer.close({"sources": [_entry(g, hashes) for g in groups], "steps": [step]})


def _make_reader(kind: str, *, text_field: str, unit: str, image_size: int | None, image_mode: str | None,
                 sampling_rate: int) -> Reader:
    # Imported here: each kind's libraries (PIL, soundfile, scipy) load only when that kind is ingested.
    if kind == "text":
        from genchain.data.ingest_text import TextReader

        return TextReader(text_field, unit)
    if kind == "image":
        from genchain.data.ingest_image import ImageReader

        return ImageReader(image_mode, image_size)
    from genchain.data.ingest_audio import AudioReader

    return AudioReader(sampling_rate)


# --------------------------------------------------------------------------------------------------- sources
def _resolve(spec: str, kind: str, reader: Reader) -> SourceGroup:
    """The files (or built-in documents) one source names, with its manifest entry."""
    if spec.startswith(BUILTIN_PREFIX):
        if kind != "text":
            raise InputError(f"{spec} is a text corpus; ingest it with --kind text")
        documents, entry = read_builtin(spec)
        return SourceGroup({**entry, "files": len(documents)}, documents=documents)
    path = Path(spec)
    entry = {"path": spec, "origin": "local files", "licence": USER_LICENCE}
    if path.is_dir():
        return SourceGroup({**entry, **_source_record(path)}, files=_directory_files(path, kind, reader))
    if path.is_file():
        if not reader.accepts(path):
            raise InputError(f"{path} is not a {kind} file; {kind} files are {reader.description}")
        return SourceGroup(entry, files=[InputFile(path, path.as_posix(), "train", path.resolve().parent.name)])
    if glob.has_magic(spec):
        matched = sorted(p for p in map(Path, glob.glob(spec, recursive=True)) if p.is_file())
        found = [p for p in matched if reader.accepts(p)]
        if not found:
            raise InputError(f"pattern {spec!r} matches no {kind} files ({reader.description}); "
                             f"it matches {len(matched)} other files")
        return SourceGroup(entry, files=[InputFile(p, p.as_posix(), "train", p.resolve().parent.name) for p in found])
    hint = f" (built-in sources are written {BUILTIN_PREFIX}NAME)" if ":" in spec else ""
    raise InputError(f"source {spec} does not exist{hint}")


def _directory_files(root: Path, kind: str, reader: Reader) -> list[InputFile]:
    """Files of the kind below ``root`` (hidden ones skipped), with splits when the top level is split dirs."""
    subdirs = [d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    split_layout = bool(subdirs) and all(name in SPLIT_DIRS for name in subdirs)
    files = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file() or not reader.accepts(path):
            continue
        parts, split = relative.parts, "train"
        if split_layout and len(parts) > 1:
            split, parts = SPLIT_DIRS[parts[0]], parts[1:]
        files.append(InputFile(path, relative.as_posix(), split, parts[-2] if len(parts) > 1 else None))
    if not files:
        raise InputError(f"directory {root} holds no {kind} files ({reader.description})")
    return files


def _source_record(directory: Path) -> dict[str, Any]:
    """Origin, licence and name from the SOURCE.json that ``genchain data get`` leaves in a raw directory."""
    path = directory / SOURCE_RECORD
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path} is corrupt ({err}); fetch the source again with `genchain data get`") from err
    return {key: record[key] for key in ("name", "origin", "licence") if key in record}


def _stream(groups: list[SourceGroup], reader: Reader, file_labels: dict[Path, str], hashes: dict[Path, str]
            ) -> Iterator[Item]:
    """Every item of every source in order, with its file's split and label unless the item brought its own;
    records each file's SHA-256 in ``hashes``."""
    total = sum(len(g.files) for g in groups)
    with tqdm(total=total, desc="ingest", unit="file", leave=False, disable=None) as bar:
        for group in groups:
            if group.documents:  # a built-in corpus: text only, _resolve refuses it for other kinds
                yield from reader.document_items(group.documents)  # type: ignore[attr-defined]
            for file in group.files:
                hashes[file.path] = sha256_file(file.path)
                for item in reader.items(file.path):
                    item.split = item.split or file.split
                    item.label = item.label or file_labels.get(file.path)
                    yield item
                bar.update()


def _entry(group: SourceGroup, hashes: dict[Path, str]) -> dict[str, Any]:
    """A source's manifest entry: a file's SHA-256, or for several files the SHA-256 of their sha256sum listing."""
    if group.documents:
        return group.entry
    if Path(group.entry["path"]).is_file():
        digest = hashes[group.files[0].path]
    else:
        listing = "".join(f"{hashes[f.path]}  {f.relative}\n" for f in group.files)
        digest = hashlib.sha256(listing.encode()).hexdigest()
    return {**group.entry, "files": len(group.files), "sha256": digest}


def _describe(counts: Counter) -> str:
    return ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items() if n) or "no files"


# --------------------------------------------------------------------------------------------------- labels
def _labels(label_from: str | None, kind: str, files: list[InputFile], reader: Reader
            ) -> tuple[dict[Path, str], list[str] | None]:
    """``(label of each file, label names in ClassLabel order)``; names are None for an unlabelled dataset."""
    own_names = reader.label_names([f.path for f in files])
    if label_from is None:
        return {}, own_names
    if own_names is not None:
        raise InputError("IDX files bring their labels in their -labels-idx1- file; drop --label-from")
    if label_from == "dirname":
        by_file = {f.path: f.class_dir for f in files if f.class_dir}
        how = "put each class's files in a directory named after it"
    elif label_from.startswith("csv:"):
        lookup = _CsvLabels(Path(label_from[4:]))
        by_file = {f.path: label for f in files if (label := lookup.label(f))}
        how = f"list the files in {label_from[4:]}"
    else:
        raise InputError(f"--label-from {label_from!r} is not understood; use dirname or csv:FILE")
    if not by_file:
        raise InputError(f"no {kind} file got a label from {label_from}; {how}")
    names = set(by_file.values())
    return by_file, sorted(names, key=int) if all(n.isdigit() for n in names) else sorted(names)


class _CsvLabels:
    """A CSV of file,label (the file column may be called path or filename), matched by relative path or name."""

    def __init__(self, path: Path):
        if not path.is_file():
            raise InputError(f"label file {path} does not exist")
        reader = csv.DictReader(line for _, line in utf8_lines(path))
        columns = reader.fieldnames or []
        file_column = next((c for c in CSV_FILE_COLUMNS if c in columns), None)
        if file_column is None or "label" not in columns:
            raise InputError(f"{path} needs a 'file' (or 'path', 'filename') column and a 'label' column; "
                             f"it has {', '.join(columns) or 'no header'}")
        self.directory = path.resolve().parent
        self.by_path: dict[str, str] = {}
        by_name: dict[str, set[str]] = {}
        for row in reader:
            key, label = (row[file_column] or "").strip(), (row["label"] or "").strip()
            if key and label:
                self.by_path[Path(key).as_posix()] = label
                by_name.setdefault(Path(key).name, set()).add(label)
        # A name listed twice with different labels matches only by path.
        self.by_name = {name: labels.pop() for name, labels in by_name.items() if len(labels) == 1}

    def label(self, file: InputFile) -> str | None:
        keys = [file.relative, file.path.as_posix()]
        if file.path.resolve().is_relative_to(self.directory):
            keys.append(file.path.resolve().relative_to(self.directory).as_posix())
        for key in keys:
            if key in self.by_path:
                return self.by_path[key]
        return self.by_name.get(file.path.name)

"""Dataset directories: the Hugging Face ``datasets`` on-disk format plus a genchain ``manifest.json``.

Layout (what ``datasets.DatasetDict.save_to_disk`` writes, so ``datasets.load_from_disk(DIR)`` opens it)::

    DATASET_DIR/
      manifest.json                        modality, splits, sources and licences, every step, content hash
      dataset_dict.json                    {"splits": ["train", "test"]}
      train/data-00000-of-00002.arrow      Arrow IPC stream shards
      train/dataset_info.json              the features (column types, class names)
      train/state.json                     the shard list

Why we write the Arrow shards ourselves instead of calling ``save_to_disk``: ingest and clean stream corpora
larger than memory, so rows go out in record batches as they come, and a shard closes at a size bound; the
``datasets`` library would first build the whole table in its cache. A test opens every kind of dataset we
write with ``datasets.load_from_disk`` to keep the two in step.

Columns: every row has ``id`` (unique in the dataset), ``source`` (where it came from) and ``parent_id`` (the
row an augmented copy was made from, else null); then the modality's payload: ``text`` (string), ``image``
(HF ``Image``: PNG bytes) or ``audio`` (HF ``Audio``: 16-bit WAV bytes at the feature's sampling rate); and,
when labels are known, ``label`` (HF ``ClassLabel``). Writes are atomic: a writer fills a hidden staging
directory next to the target and renames it into place only when everything is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow as pa

from genchain.errors import InputError
from genchain.fileio import SCHEMA_VERSION, atomic_write_json

MANIFEST = "manifest.json"
DATASET_KIND = "dataset"
MODALITIES = ("text", "image", "audio")
PAYLOAD_COLUMN = {"text": "text", "image": "image", "audio": "audio"}
SPLIT_ORDER = ("train", "validation", "test")

_SHARD_BYTES = 256 * 2**20
_BATCH_ROWS = 1024


# --------------------------------------------------------------------------------------------------- features
def value(dtype: str = "string") -> dict[str, Any]:
    return {"dtype": dtype, "_type": "Value"}


def class_label(names: list[str]) -> dict[str, Any]:
    return {"names": list(names), "_type": "ClassLabel"}


def base_features(modality: str, *, labels: list[str] | None = None, sampling_rate: int | None = None,
                  extra: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """The feature dict (HF JSON form) of a dataset of ``modality``, with a label column when names are given."""
    if modality not in MODALITIES:
        raise InputError(f"unknown modality {modality!r}; use one of {', '.join(MODALITIES)}")
    features: dict[str, dict[str, Any]] = {"id": value(), "source": value(), "parent_id": value()}
    if modality == "text":
        features["text"] = value()
    elif modality == "image":
        features["image"] = {"_type": "Image"}
    else:
        if not sampling_rate:
            raise ValueError("an audio dataset needs a sampling rate")
        features["audio"] = {"sampling_rate": int(sampling_rate), "_type": "Audio"}
    if labels is not None:
        features["label"] = class_label(labels)
    features.update(extra or {})
    return features


def arrow_type(feature: dict[str, Any]) -> pa.DataType:
    kind = feature["_type"]
    if kind == "Value":
        return {"string": pa.string(), "int64": pa.int64(), "int32": pa.int32(), "float32": pa.float32(),
                "float64": pa.float64(), "bool": pa.bool_()}[feature["dtype"]]
    if kind == "ClassLabel":
        return pa.int64()
    if kind in ("Image", "Audio"):
        return pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    if kind == "Sequence" or kind == "List":
        return pa.list_(arrow_type(feature["feature"]))
    raise ValueError(f"unsupported feature type {kind!r}")


def arrow_schema(features: dict[str, dict[str, Any]]) -> pa.Schema:
    """The Arrow schema, carrying the features in the metadata key that ``datasets`` reads."""
    meta = {"huggingface": json.dumps({"info": {"features": features}})}
    return pa.schema([(name, arrow_type(f)) for name, f in features.items()], metadata=meta)


# --------------------------------------------------------------------------------------------------- manifest
def package_versions(*names: str) -> dict[str, str]:
    versions = {}
    for name in ("genchain", "pyarrow", *names):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def make_step(op: str, params: dict[str, Any], *, rows_in: int | None, rows_out: int,
              started: float, counts: dict[str, Any] | None = None, packages: tuple[str, ...] = ()) -> dict:
    """One entry of ``manifest["steps"]``: what an operation did, to how many rows, with which versions."""
    return {"op": op, "params": params, "rows_in": rows_in, "rows_out": rows_out, "counts": counts or {},
            "seconds": round(time.time() - started, 3),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "versions": package_versions(*packages)}


# --------------------------------------------------------------------------------------------------- writing
@dataclass
class _SplitWriter:
    directory: Path
    schema: pa.Schema
    shard_bytes: int
    batch_rows: int
    shards: list[Path] = field(default_factory=list)
    rows: int = 0
    _pending: list[dict[str, Any]] = field(default_factory=list)
    _writer: pa.ipc.RecordBatchStreamWriter | None = None
    _sink: pa.OSFile | None = None
    _shard_written: int = 0

    def add(self, row: dict[str, Any]) -> None:
        self._pending.append(row)
        if len(self._pending) >= self.batch_rows:
            self.flush()

    def add_batch(self, batch: pa.RecordBatch) -> None:
        self.flush()
        self._write(batch.select(self.schema.names).cast(self.schema))

    def flush(self) -> None:
        if not self._pending:
            return
        columns = {name: [row.get(name) for row in self._pending] for name in self.schema.names}
        self._pending = []
        self._write(pa.RecordBatch.from_pydict(columns, schema=self.schema))

    def _write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        if self._writer is None:
            path = self.directory / f"shard-{len(self.shards):05d}.arrow"
            self.shards.append(path)
            self._sink = pa.OSFile(str(path), "wb")
            self._writer = pa.ipc.new_stream(self._sink, self.schema)
            self._shard_written = 0
        self._writer.write_batch(batch)
        self.rows += batch.num_rows
        self._shard_written += batch.nbytes
        if self._shard_written >= self.shard_bytes:
            self._close_shard()

    def _close_shard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()  # type: ignore[union-attr]
            self._writer = self._sink = None

    def finish(self, features: dict[str, Any]) -> None:
        self.flush()
        self._close_shard()
        if not self.shards:  # an empty split still gets one (empty) shard so the schema is on disk
            self._writer = pa.ipc.new_stream(pa.OSFile(str(self.directory / "shard-00000.arrow"), "wb"), self.schema)
            self.shards.append(self.directory / "shard-00000.arrow")
            self._writer.close()
            self._writer = None
        names = []
        for i, shard in enumerate(self.shards):
            name = f"data-{i:05d}-of-{len(self.shards):05d}.arrow"
            shard.rename(self.directory / name)
            names.append(name)
        fingerprint = hashlib.sha256(" ".join(names).encode() + str(self.rows).encode()).hexdigest()[:16]
        state = {"_data_files": [{"filename": n} for n in names], "_fingerprint": fingerprint,
                 "_format_columns": None, "_format_kwargs": {}, "_format_type": None,
                 "_output_all_columns": False, "_split": None}
        info = {"citation": "", "description": "", "features": features, "homepage": "", "license": ""}
        (self.directory / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
        (self.directory / "dataset_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")


class DatasetWriter:
    """Streams rows into a new dataset directory; nothing appears at ``out_dir`` until :meth:`close`.

    Use as a context manager: an exception inside the block removes the staging directory and leaves any
    existing dataset at ``out_dir`` as it was.
    """

    def __init__(self, out_dir: str | Path, modality: str, features: dict[str, dict[str, Any]], *,
                 overwrite: bool = False, shard_bytes: int = _SHARD_BYTES, batch_rows: int = _BATCH_ROWS):
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not overwrite:
            raise InputError(f"{self.out_dir} already exists; pass --overwrite or choose another directory")
        if self.out_dir.exists() and not (self.out_dir / MANIFEST).is_file() and any(self.out_dir.iterdir()):
            raise InputError(f"{self.out_dir} is a non-empty directory that is not a dataset; refusing to replace it")
        self.modality = modality
        self.features = features
        self.schema = arrow_schema(features)
        self.staging = self.out_dir.parent / f".{self.out_dir.name}.staging-{os.getpid()}"
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        self._splits: dict[str, _SplitWriter] = {}
        self._shard_bytes, self._batch_rows = shard_bytes, batch_rows

    def _split(self, split: str) -> _SplitWriter:
        if split not in self._splits:
            if not split.replace("_", "").isalnum():
                raise InputError(f"split name {split!r} must be letters, digits and underscores")
            directory = self.staging / split
            directory.mkdir()
            self._splits[split] = _SplitWriter(directory, self.schema, self._shard_bytes, self._batch_rows)
        return self._splits[split]

    def add(self, row: dict[str, Any], split: str = "train") -> None:
        """Queue one row (a dict keyed by column; missing columns are null)."""
        self._split(split).add(row)

    def add_batch(self, batch: pa.RecordBatch, split: str = "train") -> None:
        """Write a record batch whose columns include this dataset's (extra columns are dropped)."""
        self._split(split).add_batch(batch)

    def rows(self) -> dict[str, int]:
        return {name: w.rows + len(w._pending) for name, w in self._splits.items()}

    def close(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Finish every split, write the manifest (given body + splits, features, hash) and move into place."""
        for writer in self._splits.values():
            writer.finish(self.features)
        splits = sorted(self._splits, key=_split_sort_key)
        (self.staging / "dataset_dict.json").write_text(json.dumps({"splits": splits}), encoding="utf-8")
        import genchain

        body = {"schema_version": SCHEMA_VERSION, "kind": DATASET_KIND, "modality": self.modality,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "genchain": genchain.__version__,
                **manifest,
                "splits": {s: self._splits[s].rows for s in splits}, "features": self.features,
                "content_sha256": content_hash(self.staging, splits)}
        atomic_write_json(self.staging / MANIFEST, body)
        if self.out_dir.exists():
            trash = self.out_dir.parent / f".{self.out_dir.name}.old-{os.getpid()}"
            self.out_dir.rename(trash)
            self.staging.rename(self.out_dir)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            self.out_dir.parent.mkdir(parents=True, exist_ok=True)
            self.staging.rename(self.out_dir)
        return body

    def abort(self) -> None:
        for writer in self._splits.values():
            writer._close_shard()
        shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or self.staging.exists():
            self.abort()


def _split_sort_key(name: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(name) if name in SPLIT_ORDER else len(SPLIT_ORDER), name)


def content_hash(directory: str | Path, splits: list[str]) -> str:
    """SHA-256 over every split's Arrow shards in order: two datasets with the same rows hash the same."""
    digest = hashlib.sha256()
    for split in splits:
        state = json.loads((Path(directory) / split / "state.json").read_text(encoding="utf-8"))
        digest.update(split.encode() + b"\0")
        for entry in state["_data_files"]:
            with open(Path(directory) / split / entry["filename"], "rb") as f:
                for chunk in iter(lambda: f.read(2**20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------- reading
class Dataset:
    """A dataset directory opened for streaming reads (shards are memory-mapped, never loaded whole)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if not self.path.exists():
            raise InputError(f"dataset {self.path} does not exist")
        if not manifest_path.is_file():
            raise InputError(f"{self.path} is not a genchain dataset (no {MANIFEST}); "
                             "make one with `genchain data ingest SRC... -o DIR`")
        try:
            self.manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputError(f"{manifest_path} is corrupt ({err}); ingest the data again") from err
        if self.manifest.get("kind") != DATASET_KIND:
            raise InputError(f"{self.path} holds a {self.manifest.get('kind')!r} dataset, not rows of "
                             "text/images/audio; point at a directory made by `genchain data ingest`")
        if self.manifest.get("schema_version", 0) > SCHEMA_VERSION:
            raise InputError(f"{self.path} was written by a newer genchain; upgrade to read it")
        self.modality: str = self.manifest["modality"]
        self.features: dict[str, dict[str, Any]] = self.manifest["features"]
        self.splits: list[str] = list(self.manifest["splits"])

    @property
    def payload(self) -> str:
        return PAYLOAD_COLUMN[self.modality]

    @property
    def label_names(self) -> list[str] | None:
        label = self.features.get("label")
        return list(label["names"]) if label else None

    @property
    def sampling_rate(self) -> int | None:
        audio = self.features.get("audio")
        return int(audio["sampling_rate"]) if audio else None

    def num_rows(self, split: str | None = None) -> int:
        counts = self.manifest["splits"]
        return sum(counts.values()) if split is None else counts[self._check_split(split)]

    def _check_split(self, split: str) -> str:
        if split not in self.splits:
            raise InputError(f"{self.path} has no split {split!r}; it has {', '.join(self.splits)}")
        return split

    def shard_paths(self, split: str) -> list[Path]:
        directory = self.path / self._check_split(split)
        try:
            state = json.loads((directory / "state.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(f"{directory}/state.json is missing or corrupt ({err})") from err
        return [directory / entry["filename"] for entry in state["_data_files"]]

    def batches(self, split: str | None = None, columns: list[str] | None = None
                ) -> Iterator[tuple[str, pa.RecordBatch]]:
        """``(split, record batch)`` over one split or all of them, in order, one shard mapped at a time."""
        for name in [split] if split else self.splits:
            for shard in self.shard_paths(name):
                with pa.memory_map(str(shard), "r") as source:
                    try:
                        reader = pa.ipc.open_stream(source)
                        for batch in reader:
                            yield name, batch.select(columns) if columns else batch
                    except pa.ArrowInvalid as err:
                        raise InputError(f"{shard} is corrupt ({err}); ingest the data again") from err

    def rows(self, split: str | None = None, columns: list[str] | None = None
             ) -> Iterator[tuple[str, dict[str, Any]]]:
        for name, batch in self.batches(split, columns):
            for row in batch.to_pylist():
                yield name, row

    def column(self, name: str, split: str | None = None) -> list[Any]:
        """One column as a Python list (materialises it: meant for labels, ids and other small columns)."""
        return [v for _, b in self.batches(split, [name]) for v in b.column(0).to_pylist()]

    def derived_manifest(self, step: dict[str, Any]) -> dict[str, Any]:
        """The manifest body of a dataset made from this one: sources and steps carried over, ``step`` appended."""
        keep = {k: v for k, v in self.manifest.items()
                if k not in ("schema_version", "kind", "modality", "created", "genchain", "splits", "features",
                             "content_sha256", "steps", "parent")}
        return {**keep, "parent": {"path": str(self.path), "content_sha256": self.manifest.get("content_sha256")},
                "steps": [*self.manifest.get("steps", []), step]}


def open_dataset(path: str | Path) -> Dataset:
    return Dataset(path)


def is_dataset(path: str | Path) -> bool:
    manifest = Path(path) / MANIFEST
    if not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text(encoding="utf-8")).get("kind") == DATASET_KIND
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False

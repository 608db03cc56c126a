"""Read text documents from the files a user points at: .txt, .jsonl, .csv, .parquet, or directories of them.

Decoding is strict UTF-8: a file that is not UTF-8 is reported with its name and the byte offset of the
first bad byte, rather than silently mangled.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

from genchain.data.sources import BUILTIN_PREFIX, Document
from genchain.errors import InputError

TEXT_SUFFIXES = (".txt", ".md", ".jsonl", ".csv", ".parquet")


def expand_paths(sources: list[str]) -> list[Path]:
    """Files named by ``sources``: files as given, directories searched recursively for known suffixes."""
    files: list[Path] = []
    for src in sources:
        path = Path(src)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
            if not found:
                raise InputError(f"directory {path} holds no {', '.join(TEXT_SUFFIXES)} files")
            files.extend(found)
        elif path.is_file():
            if path.suffix.lower() not in TEXT_SUFFIXES:
                raise InputError(f"{path}: unsupported file type {path.suffix!r}; "
                                 f"use one of {', '.join(TEXT_SUFFIXES)}")
            files.append(path)
        else:
            hint = f" (built-in sources are written {BUILTIN_PREFIX}NAME)" if ":" in src else ""
            raise InputError(f"source {src} does not exist{hint}")
    return files


def decode_utf8(data: bytes, path: Path) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(
            f"{path} is not valid UTF-8: byte 0x{data[err.start]:02x} at offset {err.start}; "
            "convert it first, e.g. `iconv -f latin1 -t utf-8 IN > OUT`"
        ) from err
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


def read_documents(path: Path, text_field: str = "text") -> Iterator[Document]:
    """Documents in one file; ``text_field`` names the JSON field or CSV/Parquet column to read."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _read_parquet(path, text_field)
        return
    text = decode_utf8(path.read_bytes(), path)
    if suffix in (".txt", ".md"):
        yield Document(str(path), text)
    elif suffix == ".jsonl":
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"{path}:{lineno}: not valid JSON ({err.msg})") from err
            if not isinstance(record, dict) or text_field not in record:
                raise InputError(f"{path}:{lineno}: no {text_field!r} field; pass --text-field NAME")
            if not isinstance(record[text_field], str):
                raise InputError(f"{path}:{lineno}: field {text_field!r} is not a string")
            yield Document(f"{path}:{lineno}", record[text_field])
    elif suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None or text_field not in reader.fieldnames:
            raise InputError(f"{path}: no column {text_field!r} (columns: {reader.fieldnames}); "
                             "pass --text-field NAME")
        for rowno, row in enumerate(reader, start=2):
            yield Document(f"{path}:{rowno}", row[text_field] or "")


def _read_parquet(path: Path, text_field: str) -> Iterator[Document]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises ArrowInvalid, OSError, ...
        raise InputError(f"{path} is not a readable Parquet file ({err})") from err
    if text_field not in table.schema_arrow.names:
        raise InputError(f"{path}: no column {text_field!r} (columns: {table.schema_arrow.names}); "
                         "pass --text-field NAME")
    row = 0
    for batch in table.iter_batches(columns=[text_field]):
        for value in batch.column(0).to_pylist():
            row += 1
            if value is not None:
                yield Document(f"{path}#{row}", str(value))

"""Read text documents from the files a user points at: .txt/.md, .jsonl, .csv, .parquet, or directories of them.

Decoding is strict UTF-8: a file that is not UTF-8 is reported with its name and the byte offset of the
first bad byte, rather than silently mangled. Files are read line by line (JSONL, CSV, and .txt/.md split
into lines or paragraphs) or batch by batch (Parquet), so a corpus larger than memory streams through; only a
.txt/.md document that is one whole file is read at once, because it is one document.

A document's ``source`` says where it came from: ``path`` for a whole file, ``path:LINE`` for a line, a
paragraph (its first line) or a JSONL record, ``path:ROW`` for a CSV row (the header is row 1, so this is the
line number for one-line rows) and ``path#N`` for the N-th Parquet row.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from genchain.data.sources import BUILTIN_PREFIX, Document
from genchain.errors import InputError

TEXT_SUFFIXES = (".txt", ".md", ".jsonl", ".csv", ".parquet")
UNITS = ("file", "line", "paragraph")


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


def _utf8_error(path: Path, data: bytes, err: UnicodeDecodeError, offset: int = 0) -> InputError:
    return InputError(
        f"{path} is not valid UTF-8: byte 0x{data[err.start]:02x} at offset {offset + err.start}; "
        "convert it first, e.g. `iconv -f latin1 -t utf-8 IN > OUT`"
    )


def decode_utf8(data: bytes, path: Path) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _utf8_error(path, data, err) from err
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


def utf8_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 file, line endings kept (CRLF as LF), read one line at a time.

    Splitting the bytes at newlines never cuts a UTF-8 character (no multi-byte sequence contains 0x0A), so
    each line decodes on its own and a bad byte is reported at its offset in the whole file.
    """
    offset = 0
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise _utf8_error(path, raw, err, offset) from err
            if lineno == 1:
                line = line.removeprefix("\ufeff")
            if line.endswith("\r\n"):
                line = line[:-2] + "\n"
            offset += len(raw)
            yield lineno, line


def read_documents(path: Path, text_field: str = "text", unit: str = "file") -> Iterator[Document]:
    """Documents in one file; ``text_field`` names the JSON field or CSV/Parquet column to read, ``unit`` what
    one document of a .txt/.md file is: the ``file``, each non-blank ``line``, or each ``paragraph`` (lines
    separated by blank lines)."""
    if unit not in UNITS:
        raise InputError(f"unknown unit {unit!r}; use one of {', '.join(UNITS)}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _read_parquet(path, text_field)
    elif suffix == ".jsonl":
        yield from _read_jsonl(path, text_field)
    elif suffix == ".csv":
        yield from _read_csv(path, text_field)
    elif unit == "file":
        yield Document(str(path), decode_utf8(path.read_bytes(), path))
    elif unit == "line":
        for lineno, line in utf8_lines(path):
            if line.strip():
                yield Document(f"{path}:{lineno}", line.rstrip("\n"))
    else:
        yield from _read_paragraphs(path)


def _read_paragraphs(path: Path) -> Iterator[Document]:
    lines: list[str] = []
    first = 0
    for lineno, line in utf8_lines(path):
        if line.strip():
            if not lines:
                first = lineno
            lines.append(line.rstrip("\n"))
        elif lines:
            yield Document(f"{path}:{first}", "\n".join(lines))
            lines = []
    if lines:
        yield Document(f"{path}:{first}", "\n".join(lines))


def _read_jsonl(path: Path, text_field: str) -> Iterator[Document]:
    for lineno, line in utf8_lines(path):
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


def _read_csv(path: Path, text_field: str) -> Iterator[Document]:
    # csv reads any iterable of lines; quoted fields spanning lines are joined by the reader itself.
    reader = csv.DictReader(line for _, line in utf8_lines(path))
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


def read_dataset_documents(path: str | Path) -> Iterator[Document]:
    """The ``text`` column of a text dataset directory (every split, in order), streamed batch by batch."""
    from genchain.data.dataset import open_dataset

    dataset = open_dataset(path)
    if dataset.modality != "text":
        raise InputError(f"{path} is an {dataset.modality} dataset; this needs a text dataset")
    for _, batch in dataset.batches(columns=["source", "text"]):
        for source, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
            yield Document(source, text or "")

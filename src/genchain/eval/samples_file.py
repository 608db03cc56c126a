"""The samples file every evaluation reads: one JSON object with a ``text`` string per line.

``genchain generate text -o x.jsonl`` writes it (with ``run``, ``prompt``, ``seed``, ``index``), and any other
generator's output in the same shape works too. One reader serves ``eval text`` and ``eval human``, so both
accept and refuse the same files with the same messages.
"""

from __future__ import annotations

import json
from pathlib import Path

from genchain.errors import InputError


def read_sample_records(path: str | Path) -> list[dict]:
    """The records of a samples ``.jsonl`` file, blank lines skipped; raises InputError naming the bad line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"samples file {path} does not exist; write one with `genchain generate text -o FILE.jsonl`")
    try:
        # split on "\n" only: str.splitlines would also split at U+2028, which JSON allows inside a string
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not UTF-8 text (byte offset {err.start}); save it as UTF-8 JSON lines") from None
    records: list[dict] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path} line {number}: not valid JSON ({err.msg}); each line must be one JSON object "
                             'like {"text": "..."}') from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise InputError(f'{path} line {number}: no "text" string; each line must be a JSON object like '
                             '{"text": "..."}')
        records.append(record)
    return records


def generator_name(record: dict) -> str | None:
    """The generator a record names: its ``generator`` field, else its ``run``; None when it names none."""
    return str(record.get("generator") or record.get("run") or "") or None

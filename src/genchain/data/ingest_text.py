"""Text for ``genchain data ingest``: documents from .txt/.md/.jsonl/.csv/.parquet files, empty ones counted."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from genchain.data.ingest import Item
from genchain.data.readers import TEXT_SUFFIXES, read_documents
from genchain.data.sources import Document


class TextReader:
    """One row per document; ``unit`` says what a document of a .txt/.md file is (file, line, paragraph)."""

    description = ", ".join(TEXT_SUFFIXES)
    packages: tuple[str, ...] = ()

    def __init__(self, text_field: str, unit: str):
        self.text_field, self.unit = text_field, unit
        self.counts: Counter = Counter()

    def accepts(self, path: Path) -> bool:
        return path.suffix.lower() in TEXT_SUFFIXES

    def items(self, path: Path) -> Iterator[Item]:
        return self.document_items(read_documents(path, self.text_field, self.unit))

    def document_items(self, documents: Iterable[Document]) -> Iterator[Item]:
        """Documents with text, in order; blank ones (an empty file, a JSONL record of "") are only counted."""
        for doc in documents:
            if doc.text.strip():
                yield Item(doc.source, doc.text)
            else:
                self.counts["skipped_empty"] += 1

    def label_names(self, paths: list[Path]) -> None:
        """Text files carry no labels of their own."""
        return None

    def params(self) -> dict[str, Any]:
        return {}

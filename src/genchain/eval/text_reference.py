"""The reference text a text evaluation compares against: the training data, in any of the forms genchain keeps.

* a text dataset dir (``genchain data ingest``/``clean``: Arrow shards with a ``text`` column), every split;
* a token dataset dir (``genchain data prepare text``): its **train** split decoded with its ``tokenizer.json``
  and cut back into documents at the separator ``prepare_text`` put between them (``<|endoftext|>`` for BPE, a
  blank line for characters), the text the model actually trained on;
* ``builtin:shakespeare``, or .txt/.md/.jsonl/.csv/.parquet files and directories of them (as ``prepare text``
  reads them: a .txt file is one document).

Novelty indexes every document. MAUVE, the length histogram and the reference row of the table use *passages*:
documents cut to about the samples' median length, so that a corpus of whole plays compares with samples of
a paragraph, then ``num`` of them drawn with a fixed seed.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from genchain.data.readers import expand_paths, read_dataset_documents, read_documents
from genchain.data.sources import BUILTIN_PREFIX, read_builtin
from genchain.data.tokenize import END_OF_TEXT
from genchain.errors import InputError

_SPACE = re.compile(r"\s")


@dataclass
class Reference:
    """Reference documents, their names (source, or index), and what they were read from."""

    source: str
    documents: list[str]
    names: list[str]


def load_reference(spec: str | Path) -> Reference:
    """Read the reference named by ``spec`` (a dataset dir, token dataset dir, builtin: name, file or dir)."""
    spec = str(spec)
    path = Path(spec)
    if spec.startswith(BUILTIN_PREFIX):
        docs = read_builtin(spec)[0]
        pairs = [(d.source, d.text) for d in docs]
    elif (path / "manifest.json").is_file() and _manifest_kind(path) == "text-tokens":
        pairs = _token_dataset_documents(path)
    elif (path / "manifest.json").is_file() and _manifest_kind(path) == "dataset":
        pairs = [(d.source, d.text) for d in read_dataset_documents(path)]
    else:
        pairs = [(d.source, d.text) for p in expand_paths([spec]) for d in read_documents(p)]
    pairs = [(name, text) for name, text in pairs if text.strip()]
    if not pairs:
        raise InputError(f"reference {spec} holds no text")
    return Reference(spec, [t for _, t in pairs], [n for n, _ in pairs])


def _manifest_kind(path: Path) -> str | None:
    try:
        return json.loads((path / "manifest.json").read_text(encoding="utf-8")).get("kind")
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path / 'manifest.json'} is corrupt ({err}); pass another --reference") from err


def _token_dataset_documents(path: Path) -> list[tuple[str, str]]:
    from genchain.data.tokens import DOC_SEPARATOR, TokenDataset

    data = TokenDataset.open(path)
    text = data.tokenizer.decode(data.train.tolist())
    separator = data.manifest.get("document_separator") or (END_OF_TEXT if data.tokenizer.eos_id is not None
                                                           else DOC_SEPARATOR)
    return [(f"{path}#doc{i}", doc) for i, doc in enumerate(text.split(separator))]


def reference_passages(reference: Reference, num: int, target_chars: int, seed: int = 0) -> list[str]:
    """``num`` passages of about ``target_chars`` characters (documents longer than twice that are cut into
    consecutive pieces, at whitespace where there is some), drawn without replacement with ``seed``; all of
    them when there are fewer."""
    target_chars = max(target_chars, 1)
    passages: list[str] = []
    for doc in reference.documents:
        doc = doc.strip()
        if len(doc) <= 2 * target_chars:
            passages.append(doc)
            continue
        start = 0
        while start < len(doc):
            end = min(start + target_chars, len(doc))
            space = _SPACE.search(doc, end, start + 2 * target_chars)  # end a piece at a word boundary
            end = space.start() if space and end < len(doc) else end
            piece = doc[start:end].strip()
            if piece:
                passages.append(piece)
            start = end
    if len(passages) > num:
        passages = random.Random(seed).sample(passages, num)
    return passages

"""Token datasets: a text corpus tokenized into ``train.bin`` / ``val.bin`` memmaps plus ``tokenizer.json``.

This is nanoGPT's on-disk format (flat little-endian uint16, or uint32 for vocabularies over 65,536), so a
nanoGPT user's ``.bin`` files and ours are interchangeable, with a ``manifest.json`` added that records every
source's SHA-256 and licence, the tokenizer, the split and the token counts. The split is contiguous, train
first, as nanoGPT's ``prepare.py`` makes it, so validation text is never seen in training.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from genchain.data.dataset import is_dataset, open_dataset
from genchain.data.manifest import read_manifest, write_manifest
from genchain.data.readers import expand_paths, read_dataset_documents, read_documents
from genchain.data.sources import BUILTIN_PREFIX, Document, read_builtin
from genchain.data.tokenize import BPETokenizer, CharTokenizer, Tokenizer, load_tokenizer, save_tokenizer
from genchain.errors import InputError
from genchain.fileio import sha256_file

KIND = "text-tokens"
DOC_SEPARATOR = "\n\n"


@dataclass
class TokenDataset:
    """An opened token dataset; ``train`` and ``val`` are read-only memmaps."""

    directory: Path
    manifest: dict[str, Any]
    tokenizer: Tokenizer
    train: np.ndarray
    val: np.ndarray

    @classmethod
    def open(cls, directory: str | Path) -> TokenDataset:
        directory = Path(directory)
        manifest = read_manifest(directory, KIND)
        dtype = np.dtype(manifest["dtype"])
        splits = {}
        for split in ("train", "val"):
            path = directory / f"{split}.bin"
            if not path.is_file():
                raise InputError(f"{path} is missing; prepare the dataset again")
            expected = manifest["tokens"][split] * dtype.itemsize
            if path.stat().st_size != expected:
                raise InputError(f"{path} has {path.stat().st_size} bytes, the manifest says {expected}; "
                                 "the dataset is damaged, prepare it again")
            splits[split] = np.memmap(path, dtype=dtype, mode="r") if expected else np.zeros(0, dtype)
        tokenizer = load_tokenizer(directory / "tokenizer.json")
        return cls(directory, manifest, tokenizer, splits["train"], splits["val"])


def _collect_documents(sources: list[str], text_field: str) -> tuple[list[Document], list[dict[str, Any]]]:
    """Every source's documents: built-in corpora, text dataset directories (made by ``genchain data ingest``
    or ``clean``; their ``text`` column, every split), then files and directories of files."""
    docs: list[Document] = []
    entries: list[dict[str, Any]] = []
    paths: list[Path] = []
    for src in sources:
        if src.startswith(BUILTIN_PREFIX):
            found, entry = read_builtin(src)
            docs.extend(found)
            entries.append(entry)
        elif is_dataset(src):
            found = [d for d in read_dataset_documents(src) if d.text]
            docs.extend(found)
            manifest = open_dataset(src).manifest
            entries.append({"path": src, "content_sha256": manifest.get("content_sha256"), "documents": len(found),
                            "sources": manifest.get("sources", [])})
        else:
            paths.extend(expand_paths([src]))
    # Bars only for long inputs, and only on a terminal (disable=None).
    for path in tqdm(paths, desc="read", unit="file", leave=False, disable=True if len(paths) < 20 else None):
        found = [d for d in read_documents(path, text_field) if d.text]
        docs.extend(found)
        entries.append({"path": str(path), "sha256": sha256_file(path), "bytes": path.stat().st_size,
                        "documents": len(found)})
    empty = [e["path"] for e in entries if e["documents"] == 0]
    if empty:
        raise InputError(f"{empty[0]} holds no text; remove it from the sources")
    return docs, entries


def prepare_text(
    sources: list[str],
    out_dir: str | Path,
    tokenizer: str = "char",
    vocab_size: int = 4096,
    val_fraction: float = 0.1,
    text_field: str = "text",
    overwrite: bool = False,
    tokenizer_from: str | Path | None = None,
) -> dict[str, Any]:
    """Read, tokenize and split ``sources`` into a token dataset at ``out_dir``; return its manifest.

    The dataset is built in a temporary directory beside ``out_dir`` and renamed into place at the end, so
    an error or Ctrl-C never leaves a half-written dataset, and an existing one is replaced only when
    ``overwrite`` is set and the new one is complete. ``tokenizer_from`` (a dataset or run dir) reuses
    that tokenizer instead of training one, as fine-tuning an existing model requires.
    """
    out_dir = Path(out_dir)
    if not sources:
        raise InputError("no sources given; name text files, directories, or builtin:shakespeare")
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise InputError(f"{out_dir} exists and is not empty; pass --overwrite to replace it, or choose another -o")

    docs, entries = _collect_documents(sources, text_field)
    if not docs:
        raise InputError("the sources hold no text")
    if tokenizer_from is not None:
        tok: Tokenizer = load_tokenizer(Path(tokenizer_from) / "tokenizer.json")
    elif tokenizer == "char":
        separators = [DOC_SEPARATOR] if len(docs) > 1 else []
        tok = CharTokenizer.train([*(d.text for d in docs), *separators])
    elif tokenizer == "bpe":
        tok = BPETokenizer.train((d.text for d in docs), vocab_size)
    else:
        raise InputError(f"unknown tokenizer {tokenizer!r}; use char or bpe")
    dtype = np.uint16 if tok.vocab_size <= 2**16 else np.uint32

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        total = _write_tokens(docs, tok, staging / "all.bin", dtype)
        if total < 2:
            raise InputError(f"the corpus has {total} token(s); a language model needs more text")
        n_train = int(total * (1.0 - val_fraction))
        if n_train == total:
            n_train -= 1
        all_tokens = np.memmap(staging / "all.bin", dtype=dtype, mode="r")
        all_tokens[:n_train].tofile(staging / "train.bin")
        all_tokens[n_train:].tofile(staging / "val.bin")
        del all_tokens
        (staging / "all.bin").unlink()
        save_tokenizer(tok, staging / "tokenizer.json")
        manifest = write_manifest(staging, KIND, {
            "sources": entries,
            "documents": len(docs),
            "tokenizer": {"kind": tok.kind, "vocab_size": tok.vocab_size,
                          "sha256": sha256_file(staging / "tokenizer.json")},
            "dtype": np.dtype(dtype).name,
            "split": {"method": "contiguous", "val_fraction": val_fraction},
            "tokens": {"train": n_train, "val": total - n_train},
            "document_separator": "<|endoftext|>" if tok.eos_id is not None else DOC_SEPARATOR,
        })
        _swap_into_place(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _write_tokens(docs: list[Document], tok: Tokenizer, path: Path, dtype: type) -> int:
    """Append every document's tokens to ``path``, separated by EOS (BPE) or a blank line (char)."""
    if len(docs) > 1:
        separator = np.array([tok.eos_id], dtype=np.int64) if tok.eos_id is not None else tok.encode(DOC_SEPARATOR)
    total = 0
    with open(path, "wb") as fh:
        bar = tqdm(docs, desc="tokenize", unit="doc", leave=False, disable=True if len(docs) < 50 else None)
        for i, doc in enumerate(bar):
            ids = tok.encode(doc.text)
            if i > 0:
                ids = np.concatenate([separator, ids])
            ids.astype(dtype).tofile(fh)
            total += len(ids)
    return total


def _swap_into_place(staging: Path, out_dir: Path) -> None:
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
        os.replace(staging, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out_dir)

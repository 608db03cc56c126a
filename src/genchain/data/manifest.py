"""``manifest.json``: what a dataset directory holds and where it came from, with a schema version."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from genchain.errors import InputError
from genchain.fileio import SCHEMA_VERSION, atomic_write_json, sha256_file

MANIFEST = "manifest.json"


def write_manifest(directory: str | Path, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    import genchain

    manifest = {"schema_version": SCHEMA_VERSION, "kind": kind, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                time.gmtime()), "genchain": genchain.__version__, **body}
    atomic_write_json(Path(directory) / MANIFEST, manifest)
    return manifest


def read_manifest(directory: str | Path, kind: str) -> dict[str, Any]:
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise InputError(f"{directory} is not a genchain dataset (no {MANIFEST}); "
                         "make one with `genchain data prepare text SRC -o DIR`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path} is corrupt ({err}); prepare the dataset again") from err
    if manifest.get("kind") != kind:
        raise InputError(f"{directory} holds a {manifest.get('kind')!r} dataset; this command needs {kind!r}")
    if manifest.get("schema_version", 0) > SCHEMA_VERSION:
        raise InputError(f"{directory} was written by a newer genchain; upgrade to read it")
    return manifest


def manifest_hash(directory: str | Path) -> str:
    return sha256_file(Path(directory) / MANIFEST)

"""Artefact files: everything the server writes or reads lives under one configured directory.

Ids are 32 lowercase hex digits (a UUID4 without dashes) made by the server; anything else -- ``..``, slashes,
percent-encodings, absolute paths, NUL bytes -- is rejected before a path is built, and every path is resolved
and checked to lie inside the directory, so a symlink planted inside cannot lead out either.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from genchain.errors import InputError

_ID = re.compile(r"^[0-9a-f]{32}$")


def new_id() -> str:
    return uuid.uuid4().hex


def valid_id(artefact_id: str) -> bool:
    return bool(_ID.fullmatch(artefact_id))


class ArtefactFiles:
    """The artefacts directory: ``<root>/<id[:2]>/<id>.<suffix>`` and the signed sidecars beside them."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def new_path(self, artefact_id: str, suffix: str) -> Path:
        if not valid_id(artefact_id) or not re.fullmatch(r"\.[a-z0-9]{1,5}", suffix):
            raise InputError(f"invalid artefact id or suffix: {artefact_id!r}{suffix!r}")
        path = self.root / artefact_id[:2] / f"{artefact_id}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def relative(self, path: Path) -> str:
        return path.resolve().relative_to(self.root).as_posix()

    def resolve(self, relative: str) -> Path:
        """The file a stored relative path names; InputError when it would leave the directory."""
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise InputError(f"artefact path {relative!r} lies outside {self.root}")
        return path

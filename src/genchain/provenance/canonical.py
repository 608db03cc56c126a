"""Canonical JSON: the one byte encoding of anything genchain hashes or signs.

Two parties that hash "the same" JSON object must get the same bytes, so key order and whitespace are fixed:
keys sorted, no spaces, UTF-8 without ``\\u`` escapes for non-ASCII text (the same rules as RFC 8785's JCS for the
objects we write: strings, integers, booleans, null, lists and objects; we do not hash floats whose shortest
repr could differ between implementations).
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json(obj: Any) -> bytes:
    """``obj`` as canonical UTF-8 JSON bytes: sorted keys, ``,``/``:`` separators, no ASCII escaping."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

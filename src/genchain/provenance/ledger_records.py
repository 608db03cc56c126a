"""What the ledger's entries say, and the checks each kind must pass before it is logged.

Three kinds of entry (the leaf is the canonical JSON ``{"body": ..., "kind": ..., "timestamp": ms}``):

* ``artefact``: a generated file: ``{"sha256", "manifest_sha256", "signer", "media", ...}``.
* ``register``: a copyright registration: ``{"sha256", "title", "license" (SPDX id), "owner", "signature"}``, where
  ``owner`` is ``{"name", "key_id", "public_key"}`` and ``signature`` is the owner's Ed25519 signature of
  ``REGISTER_CONTEXT || canonical_json(body without "signature")``. A work (its SHA-256) is registered once.
* ``transfer``: ``{"registration", "previous", "from", "to", "signature"}``: the current owner hands the work to
  ``to``; ``previous`` is the index of the latest ownership entry (the registration or the last transfer) so a
  signed transfer cannot be replayed later, and the signature (over ``TRANSFER_CONTEXT || canonical_json(body
  without "signature")``) must be the current owner's, checked with the key the ledger already holds for them.

The context prefixes keep these signatures from ever being valid for anything else the same key signs
(manifests, tree heads).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from genchain.errors import InputError, ProvenanceError
from genchain.provenance.canonical import canonical_json
from genchain.provenance.keys import Identity, key_id, public_key_from_text, verify_signature

KINDS = ("artefact", "register", "transfer")
REGISTER_CONTEXT = b"genchain/ledger/register/v1\x00"
TRANSFER_CONTEXT = b"genchain/ledger/transfer/v1\x00"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# An SPDX licence id (https://spdx.org/licenses/) or a LicenseRef-; expressions with AND/OR are not ownership terms.
_SPDX = re.compile(r"^(LicenseRef-[A-Za-z0-9.-]+|[A-Za-z0-9][A-Za-z0-9.+-]*)$")


@dataclass(frozen=True)
class Entry:
    """One log entry: its position, kind and body, and ``leaf``, the exact bytes whose hash is ``leaf_hash``."""

    index: int
    kind: str
    body: dict
    leaf_hash: bytes
    timestamp: int  # milliseconds since the Unix epoch
    leaf: bytes = b""


def encode_leaf(kind: str, timestamp: int, body: dict) -> bytes:
    return canonical_json({"body": body, "kind": kind, "timestamp": timestamp})


def decode_leaf(leaf: bytes) -> tuple[str, int, dict]:
    """``(kind, timestamp, body)`` of a stored leaf; ValueError if it is not a canonical entry."""
    data = json.loads(leaf.decode("utf-8"))
    if not isinstance(data, dict) or set(data) != {"body", "kind", "timestamp"}:
        raise ValueError("not an entry object with body, kind and timestamp")
    kind, timestamp, body = data["kind"], data["timestamp"], data["body"]
    if kind not in KINDS or not isinstance(timestamp, int) or not isinstance(body, dict):
        raise ValueError("kind, timestamp or body has the wrong type")
    if canonical_json(data) != leaf:
        raise ValueError("not in canonical JSON form")
    return kind, timestamp, body


def check_body(kind: str, body: Any) -> None:
    """Shape checks that need no ledger state (the signature of a registration included)."""
    if kind not in KINDS:
        raise InputError(f"unknown ledger entry kind {kind!r}; use one of {', '.join(KINDS)}")
    if not isinstance(body, dict):
        raise InputError(f"a {kind} entry's body must be a JSON object, not {type(body).__name__}")
    try:
        json.dumps(body, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise InputError(f"the {kind} entry's body is not plain JSON ({err}); use strings, numbers, lists "
                         "and objects") from None
    if kind in ("artefact", "register") and not _SHA256.match(str(body.get("sha256", ""))):
        raise InputError(f"a {kind} entry needs 'sha256': 64 lowercase hex digits of the file's SHA-256")
    if kind == "register":
        _require(body, ("sha256", "title", "license", "owner", "signature"), kind)
        if not isinstance(body["title"], str) or not _SPDX.match(str(body["license"])):
            raise InputError(f"licence {body['license']!r} is not an SPDX licence id (e.g. CC-BY-4.0, MIT, "
                             "LicenseRef-mine); see https://spdx.org/licenses/")
        owner = party_key(body["owner"])
        if not verify_signature(owner, _signature(body), REGISTER_CONTEXT + canonical_json(unsigned(body))):
            raise ProvenanceError(f"the registration of {body['sha256'][:12]}... is not signed by its owner "
                                  f"{body['owner'].get('name')!r}; it was not logged")
    if kind == "transfer":
        _require(body, ("registration", "previous", "from", "to", "signature"), kind)
        if not all(isinstance(body[k], int) and body[k] >= 0 for k in ("registration", "previous")):
            raise InputError("a transfer's 'registration' and 'previous' are entry indices (integers >= 0)")
        party_key(body["to"])


def check_transfer(body: dict, owner: dict, last: int) -> None:
    """Refuse a transfer unless the current ``owner`` (as the ledger records them) signed it, for this state."""
    if body["from"] != owner:
        raise ProvenanceError(f"registration {body['registration']} belongs to {owner['name']!r} (key "
                              f"{owner['key_id'][:16]}...), not {body['from'].get('name')!r}: only the current "
                              "owner can transfer it")
    if body["previous"] != last:
        raise ProvenanceError(f"this transfer was signed for ownership entry {body['previous']}, but the latest "
                              f"is {last}: a stale or replayed transfer; sign a new one")
    message = TRANSFER_CONTEXT + canonical_json(unsigned(body))
    if not verify_signature(party_key(owner), _signature(body), message):
        raise ProvenanceError(f"the transfer of registration {body['registration']} is not signed by its owner "
                              f"{owner['name']!r}; it was not logged")


def party(identity: Identity) -> dict:
    """How an entry names a person: their identity name, key id and raw public key (hex)."""
    return {"name": identity.name, "key_id": identity.key_id, "public_key": identity.public_hex}


def party_key(value: Any):
    """The Ed25519 key of a party dict, after checking that its key id matches it."""
    if not isinstance(value, dict) or not {"name", "key_id", "public_key"} <= set(value):
        raise InputError("an owner must be {name, key_id, public_key}")
    key = public_key_from_text(str(value["public_key"]))
    if key_id(key) != value["key_id"]:
        raise ProvenanceError(f"owner {value['name']!r}: key id does not match the public key")
    return key


def unsigned(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "signature"}


def register_body(sha256: str, owner: Identity, license: str, title: str) -> dict:
    """A registration of the work with SHA-256 ``sha256`` by ``owner`` under ``license``, signed by the owner."""
    body = {"sha256": sha256.lower(), "title": title, "license": license, "owner": party(owner)}
    return {**body, "signature": owner.sign(REGISTER_CONTEXT + canonical_json(body)).hex()}


def transfer_body(registration: int, previous: int, owner: Identity, to: Identity) -> dict:
    """``owner`` hands registration ``registration`` to ``to``; ``previous`` is the latest ownership entry."""
    body = {"registration": registration, "previous": previous, "from": party(owner), "to": party(to)}
    return {**body, "signature": owner.sign(TRANSFER_CONTEXT + canonical_json(body)).hex()}


def _require(body: dict, keys: tuple[str, ...], kind: str) -> None:
    missing = [k for k in keys if k not in body]
    if missing:
        raise InputError(f"a {kind} entry needs {', '.join(missing)}")


def _signature(body: dict) -> bytes:
    try:
        return bytes.fromhex(str(body["signature"]))
    except ValueError:
        raise ProvenanceError("the entry's signature is not hex") from None

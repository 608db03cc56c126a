"""Portable proof files: what ``genchain ledger prove --json`` writes and anyone can check offline with the key.

An inclusion proof file holds the entry's exact leaf bytes (its canonical JSON, as text), the audit path and the
signed tree head; a consistency proof file holds two signed tree heads and the proof between them. Checking one
needs only the operator's public key, SHA-256 and Ed25519 (the ``how`` field spells out every step, so a
verifier needs no genchain code):

1. ``leaf_hash = SHA-256(0x00 || UTF-8(leaf))``;
2. the audit path (RFC 9162 §2.1.3.2) from ``leaf_hash`` at ``index`` gives the tree head's ``root_hash``;
3. the tree head's signature is Ed25519 by the operator key over the RFC 6962 §3.5 ``TreeHeadSignature``:
   ``0x00 || 0x01 || uint64_be(timestamp) || uint64_be(tree_size) || root_hash``.
"""

from __future__ import annotations

from typing import Any

from genchain.errors import ProvenanceError
from genchain.provenance.merkle import (
    SignedTreeHead,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
    verify_tree_head,
)

INCLUSION = "genchain-inclusion-proof/1"
CONSISTENCY = "genchain-consistency-proof/1"
HOW_INCLUSION = ("leaf_hash = SHA-256(0x00 || UTF-8(leaf)); fold the proof from leaf_hash at index in a tree of "
                 "tree_size leaves as RFC 9162 section 2.1.3.2 says (node = SHA-256(0x01 || left || right)) to get "
                 "tree_head.root_hash; tree_head.signature is Ed25519 by the operator key over 0x00 0x01 || "
                 "uint64_be(timestamp) || uint64_be(tree_size) || root_hash (RFC 6962 section 3.5)")
HOW_CONSISTENCY = ("the proof shows old_tree_head's tree is a prefix of new_tree_head's (RFC 9162 section "
                   "2.1.4.2); both heads are signed as RFC 6962 section 3.5 says, by the operator key")


def inclusion_document(ledger, index: int, tree_size: int | None = None) -> dict[str, Any]:
    """A self-contained proof that entry ``index`` is in the log's tree of ``tree_size`` entries (default: all)."""
    entry = ledger.entry(index)
    head = ledger.signed_tree_head(tree_size)
    proof = ledger.inclusion_proof(index, head.tree_size)
    return {"type": INCLUSION, "index": index, "tree_size": head.tree_size, "leaf": entry.leaf.decode("utf-8"),
            "leaf_hash": entry.leaf_hash.hex(), "proof": [p.hex() for p in proof], "tree_head": head.to_json(),
            "how": HOW_INCLUSION}


def consistency_document(ledger, old_size: int, new_size: int | None = None) -> dict[str, Any]:
    """A self-contained proof that the log's tree of ``old_size`` entries is a prefix of its tree of ``new_size``."""
    new = ledger.signed_tree_head(new_size)
    old = ledger.signed_tree_head(old_size)
    proof = ledger.consistency_proof(old.tree_size, new.tree_size)
    return {"type": CONSISTENCY, "old_tree_head": old.to_json(), "new_tree_head": new.to_json(),
            "proof": [p.hex() for p in proof], "how": HOW_CONSISTENCY}


def verify_document(document: Any, public_key: str) -> str:
    """Check a proof file with the operator's public key (hex or PEM); a sentence on success, else ProvenanceError."""
    if not isinstance(document, dict) or document.get("type") not in (INCLUSION, CONSISTENCY):
        raise ProvenanceError(f"not a genchain proof file (type must be {INCLUSION} or {CONSISTENCY})")
    try:
        proof = [bytes.fromhex(p) for p in document["proof"]]
        if document["type"] == INCLUSION:
            return _verify_inclusion(document, proof, public_key)
        return _verify_consistency(document, proof, public_key)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ProvenanceError(f"the proof file is malformed ({type(err).__name__}: {err})") from None


def _head(data: Any, public_key: str, what: str) -> SignedTreeHead:
    head = SignedTreeHead.from_json(data)
    if not verify_tree_head(head, public_key):
        raise ProvenanceError(f"the {what} is not signed by the key you gave: forged, altered, or another log")
    return head


def _verify_inclusion(document: dict, proof: list[bytes], public_key: str) -> str:
    head = _head(document["tree_head"], public_key, "tree head")
    index, size = int(document["index"]), int(document["tree_size"])
    digest = leaf_hash(document["leaf"].encode("utf-8"))
    if digest.hex() != document["leaf_hash"]:
        raise ProvenanceError("the leaf does not hash to leaf_hash: the entry text was altered")
    if size != head.tree_size or not verify_inclusion(digest, index, size, proof, head.root_hash):
        raise ProvenanceError(f"the audit path does not lead from entry {index} to the signed root: a forged "
                              "or altered proof")
    return (f"entry {index} is in the log of {size} entries with root {head.root_hash.hex()[:16]}..., signed by "
            f"key {head.key_id[:16]}... at {head.timestamp} ms")


def _verify_consistency(document: dict, proof: list[bytes], public_key: str) -> str:
    old = _head(document["old_tree_head"], public_key, "old tree head")
    new = _head(document["new_tree_head"], public_key, "new tree head")
    if not verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, proof):
        raise ProvenanceError(f"the log of {new.tree_size} entries does not extend the log of {old.tree_size}: "
                              "a forged proof, or the log was rewritten")
    return (f"the log of {new.tree_size} entries extends the log of {old.tree_size} entries (append-only), both "
            f"heads signed by key {new.key_id[:16]}...")

"""Merkle tree hashing, audit paths and consistency proofs of RFC 6962 §2.1, verified as RFC 9162 §2.1.3-2.1.4.

The tree over leaves ``d(0) .. d(n-1)`` is the Merkle Tree Hash (MTH) of RFC 6962 §2.1:

* ``MTH({}) = SHA-256()`` (the empty string),
* ``MTH({d(0)}) = SHA-256(0x00 || d(0))`` (:func:`leaf_hash`),
* ``MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))`` with ``k`` the largest power of two below ``n``
  (:func:`node_hash`).

The 0x00/0x01 prefixes separate leaves from interior nodes, so no leaf can pose as a subtree (the second-preimage
attack on plain Merkle trees). Every function here works on *leaf hashes*, the 32-byte ``leaf_hash(d)`` values a
log stores; nothing here touches storage.

A proof element is always the MTH of a leaf range ``[start, end)``. :func:`inclusion_ranges` and
:func:`consistency_ranges` list those ranges (RFC 6962 §2.1.1 PATH and §2.1.2 PROOF, unrolled), so a log that
stores every *perfect* subtree (``2**level`` leaves starting at a multiple of ``2**level``) can build any proof
from O(log n) stored hashes: each range is one perfect subtree, except at most one range that ends at the tree's
right edge, which :func:`perfect_subtrees` splits into O(log n) perfect ones.

Signed tree heads follow RFC 6962 §3.5: the operator signs the 50-byte TLS structure ``TreeHeadSignature``
(version v1 = 0, signature_type tree_hash = 1, uint64 timestamp in milliseconds, uint64 tree_size, 32-byte root),
here with Ed25519 (RFC 8032) instead of ECDSA/RSA.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from genchain.errors import ProvenanceError
from genchain.provenance.keys import key_id, public_key_from_text, raw_public_bytes, verify_signature

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
Range = tuple[int, int]


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one log entry's bytes."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly below ``n`` (n >= 2): where RFC 6962 splits a tree of n leaves."""
    return 1 << ((n - 1).bit_length() - 1)


def perfect_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """The perfect subtrees ``(level, index)`` that make up ``[start, end)``, left to right, largest first.

    ``start`` must be 0 or aligned to a power of two no smaller than ``end - start`` (every range that
    :func:`inclusion_ranges`, :func:`consistency_ranges` or a tree head asks for is). Subtree ``(level, index)``
    covers leaves ``[index * 2**level, (index + 1) * 2**level)``; level 0 is a leaf.
    """
    parts = []
    position, remaining = start, end - start
    for level in range(remaining.bit_length() - 1, -1, -1):
        if remaining >> level & 1:
            parts.append((level, position >> level))
            position += 1 << level
    return parts


def fold(hashes: Sequence[bytes]) -> bytes:
    """The MTH of a range from its perfect subtrees (as :func:`perfect_subtrees` lists them), folded from the right.

    Because each subtree is larger than everything to its right, RFC 6962's split puts it on the left:
    ``MTH = node(P1, node(P2, ... node(Pk-1, Pk)))``.
    """
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for h in reversed(hashes[:-1]):
        result = node_hash(h, result)
    return result


def inclusion_ranges(index: int, tree_size: int) -> list[Range]:
    """The leaf ranges whose MTHs form the audit path of leaf ``index`` (RFC 6962 §2.1.1), leaf side first."""
    if not 0 <= index < tree_size:
        raise ProvenanceError(f"leaf {index} is not in a tree of {tree_size} entries")
    ranges = []
    start, end = 0, tree_size
    while end - start > 1:
        k = split_point(end - start)
        if index < start + k:  # PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])
            ranges.append((start + k, end))
            end = start + k
        else:  # PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k])
            ranges.append((start, start + k))
            start += k
    return ranges[::-1]


def consistency_ranges(old_size: int, new_size: int) -> list[Range]:
    """The leaf ranges whose MTHs form PROOF(old_size, D[new_size]) (RFC 6962 §2.1.2), in proof order."""
    if not 0 <= old_size <= new_size:
        raise ProvenanceError(f"no consistency proof from size {old_size} to size {new_size}: "
                              "the old size must be between 0 and the new size")
    if old_size in (0, new_size):
        return []  # the empty tree and an unchanged tree need no proof
    ranges = []
    start, end, m, complete = 0, new_size, old_size, True
    while m != end - start:
        k = split_point(end - start)
        if m <= k:  # SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            ranges.append((start + k, end))
            end = start + k
        else:  # SUBPROOF(m, D[n], b) = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            ranges.append((start, start + k))
            start, m, complete = start + k, m - k, False
    if not complete:  # SUBPROOF(m, D[m], false) = {MTH(D[m])}
        ranges.append((start, end))
    return ranges[::-1]


def _range_hash(leaf_hashes: Sequence[bytes]) -> Callable[[Range], bytes]:
    return lambda r: fold([_subtree(leaf_hashes, level, index) for level, index in perfect_subtrees(*r)])


def _subtree(leaf_hashes: Sequence[bytes], level: int, index: int) -> bytes:
    nodes = list(leaf_hashes[index << level:(index + 1) << level])
    while len(nodes) > 1:
        nodes = [node_hash(nodes[i], nodes[i + 1]) for i in range(0, len(nodes), 2)]
    return nodes[0]


def root(leaves: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash over ``leaves``, the leaf hashes (``leaf_hash(d)``) in log order."""
    return _range_hash(leaves)((0, len(leaves)))


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree over all of ``leaves`` (leaf hashes), computed from scratch."""
    return [_range_hash(leaves)(r) for r in inclusion_ranges(index, len(leaves))]


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """The proof that the tree over ``leaves[:old_size]`` is a prefix of the tree over ``leaves``."""
    return [_range_hash(leaves)(r) for r in consistency_ranges(old_size, len(leaves))]


def verify_inclusion(leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` show that leaf ``index`` with ``leaf_hash`` is in the tree with ``root``?"""
    if not 0 <= index < tree_size or any(len(h) != HASH_SIZE for h in (leaf_hash, root, *proof)):
        return False
    fn, sn = index, tree_size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            return False  # more proof than tree
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: does ``proof`` show the tree ``old_root`` (old_size) is a prefix of ``new_root``?"""
    if not 0 <= old_size <= new_size or any(len(h) != HASH_SIZE for h in (old_root, new_root, *proof)):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT  # the empty tree is a prefix of every tree
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is itself a node of the new tree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0


class Frontier:
    """The perfect subtrees of a growing tree, largest first: all an append needs (a "compact range").

    A tree of ``n`` leaves is the perfect subtrees given by the binary digits of ``n``; appending a leaf merges
    equal-sized neighbours, so each append costs O(1) hashes on average and never reads old leaves.
    """

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != size.bit_count():
            raise ProvenanceError(f"a tree of {size} leaves has {size.bit_count()} perfect subtrees, "
                                  f"not {len(hashes)}")
        self.size = size
        self.hashes = list(hashes)

    def copy(self) -> Frontier:
        return Frontier(self.size, self.hashes)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; returns the subtrees ``(level, index, hash)`` this completes (level >= 1)."""
        completed = []
        h, level, index = leaf, 0, self.size
        while index & 1:  # the new subtree is a right child: merge it with its left sibling
            h = node_hash(self.hashes.pop(), h)
            level, index = level + 1, index >> 1
            completed.append((level, index, h))
        self.hashes.append(h)
        self.size += 1
        return completed

    def root(self) -> bytes:
        return fold(self.hashes)


@dataclass(frozen=True)
class SignedTreeHead:
    """The operator's signed statement "my log held ``tree_size`` entries with root ``root_hash`` at ``timestamp``".

    ``timestamp`` is milliseconds since the Unix epoch; ``public_key`` is the raw Ed25519 key in hex and
    ``key_id`` its SHA-256; ``signature`` is Ed25519 over :meth:`signed_bytes`.
    """

    tree_size: int
    root_hash: bytes
    timestamp: int
    key_id: str
    public_key: str
    signature: bytes

    def signed_bytes(self) -> bytes:
        return tree_head_bytes(self.tree_size, self.timestamp, self.root_hash)

    def to_json(self) -> dict:
        """A JSON-ready dict (hashes, keys and signature in hex) that :meth:`from_json` reads back."""
        return {"tree_size": self.tree_size, "timestamp": self.timestamp, "root_hash": self.root_hash.hex(),
                "key_id": self.key_id, "public_key": self.public_key, "signature": self.signature.hex()}

    @classmethod
    def from_json(cls, data: dict | str) -> SignedTreeHead:
        """Read a tree head from :meth:`to_json`'s dict or its JSON text; a ProvenanceError if malformed."""
        try:
            if isinstance(data, str):
                data = json.loads(data)
            sth = cls(int(data["tree_size"]), bytes.fromhex(data["root_hash"]), int(data["timestamp"]),
                      str(data["key_id"]), str(data["public_key"]), bytes.fromhex(data["signature"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ProvenanceError(f"not a signed tree head ({type(err).__name__}: {err}); expected the JSON that "
                                  "`genchain ledger sth` prints") from None
        if len(sth.root_hash) != HASH_SIZE or not 0 <= sth.tree_size < 1 << 64 or not 0 <= sth.timestamp < 1 << 64:
            raise ProvenanceError("not a signed tree head: the root hash must be 32 bytes, the size and time "
                                  "unsigned 64-bit integers")
        return sth


def tree_head_bytes(tree_size: int, timestamp: int, root_hash: bytes) -> bytes:
    """RFC 6962 §3.5 TreeHeadSignature: ``0x00 (v1) || 0x01 (tree_hash) || uint64 ts || uint64 size || root``."""
    return struct.pack(">BBQQ32s", 0, 1, timestamp, tree_size, root_hash)


def verify_tree_head(sth: SignedTreeHead, public_key: Ed25519PublicKey | str) -> bool:
    """True when ``public_key`` (an Ed25519 key, or its hex/PEM text) signed ``sth`` and matches its key id.

    Check the key you got from the operator out of band, never only the key the tree head carries.
    """
    if isinstance(public_key, str):
        public_key = public_key_from_text(public_key)
    if not (0 <= sth.tree_size < 1 << 64 and 0 <= sth.timestamp < 1 << 64 and len(sth.root_hash) == HASH_SIZE):
        return False  # not encodable as a TreeHeadSignature, so nothing can have signed it
    if sth.key_id != key_id(public_key) or sth.public_key != raw_public_bytes(public_key).hex():
        return False
    return verify_signature(public_key, sth.signature, sth.signed_bytes())

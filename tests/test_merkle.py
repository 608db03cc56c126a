"""Merkle tree (RFC 6962 §2.1) against an independent, literal implementation of the RFC written here.

The reference below transcribes RFC 6962's recursive definitions of MTH, PATH and PROOF, and verifies proofs by
recursively rebuilding the roots they imply; it imports nothing from genchain. Known answers come from the
Certificate Transparency test data (certificate-transparency-go, merkle/log_verifier_test.go).
"""

import hashlib
from functools import cache

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from genchain.errors import ProvenanceError
from genchain.provenance import merkle

# ---- the independent reference: RFC 6962 §2.1 read literally ---------------------------------------------------


def ref_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def ref_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def ref_k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def make_reference(data: list[bytes]):
    """MTH, PATH and PROOF over ``data`` exactly as RFC 6962 §2.1, §2.1.1 and §2.1.2 define them."""

    @cache
    def mth(start: int, end: int) -> bytes:
        n = end - start
        if n == 0:
            return hashlib.sha256(b"").digest()
        if n == 1:
            return ref_leaf(data[start])
        k = ref_k(n)
        return ref_node(mth(start, start + k), mth(start + k, end))

    def path(m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = ref_k(n)
        if m < k:
            return path(m, start, start + k) + [mth(start + k, end)]
        return path(m - k, start + k, end) + [mth(start, start + k)]

    def subproof(m: int, start: int, end: int, b: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if b else [mth(start, end)]
        k = ref_k(n)
        if m <= k:
            return subproof(m, start, start + k, b) + [mth(start + k, end)]
        return subproof(m - k, start + k, end, False) + [mth(start, start + k)]

    return mth, path, subproof


def ref_root_from_path(leaf: bytes, m: int, n: int, proof: list[bytes]) -> bytes | None:
    """The root that ``proof`` implies for leaf ``m`` of ``n``, following PATH's recursion backwards."""
    if n == 1:
        return leaf if not proof else None
    if not proof:
        return None
    k = ref_k(n)
    if m < k:
        below = ref_root_from_path(leaf, m, k, proof[:-1])
        return None if below is None else ref_node(below, proof[-1])
    below = ref_root_from_path(leaf, m - k, n - k, proof[:-1])
    return None if below is None else ref_node(proof[-1], below)


def ref_roots_from_consistency(m: int, n: int, proof: list[bytes], old_root: bytes, b: bool = True):
    """The (old, new) roots that ``proof`` implies, following SUBPROOF's recursion backwards."""
    if m == n:
        if b:
            return (old_root, old_root) if not proof else None
        return (proof[0], proof[0]) if len(proof) == 1 else None
    if not proof:
        return None
    k = ref_k(n)
    if m <= k:
        below = ref_roots_from_consistency(m, k, proof[:-1], old_root, b)
        return None if below is None else (below[0], ref_node(below[1], proof[-1]))
    below = ref_roots_from_consistency(m - k, n - k, proof[:-1], old_root, False)
    return None if below is None else (ref_node(proof[-1], below[0]), ref_node(proof[-1], below[1]))


def ref_verify_inclusion(leaf, m, n, proof, root) -> bool:
    return 0 <= m < n and ref_root_from_path(leaf, m, n, list(proof)) == root


def ref_verify_consistency(m, n, old_root, new_root, proof) -> bool:
    if not 0 < m <= n:
        return False
    return ref_roots_from_consistency(m, n, list(proof), old_root) == (old_root, new_root)


# ---- known answers ----------------------------------------------------------------------------------------------

CT_LEAVES = [bytes.fromhex(h) for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                        "606162636465666768696a6b6c6d6e6f"]]
CT_ROOTS = ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"]
# (leaf number counted from 1, tree size, audit path)
CT_INCLUSION = [
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (2, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
CT_CONSISTENCY = [
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]


def test_known_roots_and_empty_tree():
    assert merkle.root([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    hashes = [merkle.leaf_hash(d) for d in CT_LEAVES]
    assert hashes[0].hex() == CT_ROOTS[0]  # a one-leaf tree's root is its leaf hash
    for n in range(1, 9):
        assert merkle.root(hashes[:n]).hex() == CT_ROOTS[n - 1], n


def test_known_proofs():
    hashes = [merkle.leaf_hash(d) for d in CT_LEAVES]
    for leaf, size, path in CT_INCLUSION:
        proof = merkle.inclusion_proof(hashes[:size], leaf - 1)
        assert [p.hex() for p in proof] == path
        assert merkle.verify_inclusion(hashes[leaf - 1], leaf - 1, size, proof, bytes.fromhex(CT_ROOTS[size - 1]))
    for old, new, path in CT_CONSISTENCY:
        proof = merkle.consistency_proof(hashes[:new], old)
        assert [p.hex() for p in proof] == path
        assert merkle.verify_consistency(old, new, bytes.fromhex(CT_ROOTS[old - 1]), bytes.fromhex(CT_ROOTS[new - 1]),
                                         proof)


# ---- every size 1..70, every index and old size, against the reference ------------------------------------------

N = 70
DATA = [f"entry {i}".encode() for i in range(N)]
HASHES = [merkle.leaf_hash(d) for d in DATA]
MTH, PATH, SUBPROOF = make_reference(DATA)


def test_roots_and_frontier_match_reference():
    frontier = merkle.Frontier()
    for n in range(1, N + 1):
        completed = frontier.append(HASHES[n - 1])
        for level, index, h in completed:  # every completed perfect subtree is the reference MTH of its range
            assert h == MTH(index << level, (index + 1) << level)
        assert frontier.root() == merkle.root(HASHES[:n]) == MTH(0, n), n


def test_inclusion_all_sizes_and_indices():
    for n in range(1, N + 1):
        root = MTH(0, n)
        for m in range(n):
            proof = merkle.inclusion_proof(HASHES[:n], m)
            assert proof == PATH(m, 0, n), (m, n)
            assert merkle.verify_inclusion(HASHES[m], m, n, proof, root), (m, n)
            assert ref_verify_inclusion(HASHES[m], m, n, proof, root), (m, n)


def test_consistency_all_sizes():
    for n in range(1, N + 1):
        for m in range(0, n + 1):
            proof = merkle.consistency_proof(HASHES[:n], m)
            want = [] if m in (0, n) else SUBPROOF(m, 0, n, True)
            assert proof == want, (m, n)
            assert merkle.verify_consistency(m, n, MTH(0, m), MTH(0, n), proof), (m, n)
            if m > 0:
                assert ref_verify_consistency(m, n, MTH(0, m), MTH(0, n), proof), (m, n)


def test_perfect_subtrees_tile_the_range():
    for n in range(1, N + 1):
        for start, end in merkle.inclusion_ranges(n // 2, n) + merkle.consistency_ranges(max(1, n // 3), n):
            parts = merkle.perfect_subtrees(start, end)
            covered = [(i << lv, (i + 1) << lv) for lv, i in parts]
            assert covered[0][0] == start and covered[-1][1] == end
            assert all(a[1] == b[0] for a, b in zip(covered[:-1], covered[1:], strict=True))
            assert merkle.fold([MTH(a, b) for a, b in covered]) == MTH(start, end)


# ---- forged proofs: the CT corruption probes, checked by ours and by the reference ------------------------------

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def flip(proof: list[bytes], i: int) -> list[bytes]:
    forged = list(proof)
    forged[i] = bytes([forged[i][0] ^ 8]) + forged[i][1:]
    return forged


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 31, 64, 70])
def test_forged_inclusion_rejected(n):
    root = MTH(0, n)
    for m in {0, n // 2, n - 1}:
        proof, leaf = PATH(m, 0, n), HASHES[m]
        probes = [(leaf, m - 1, n, proof, root), (leaf, m + 1, n, proof, root), (leaf, m ^ 2, n, proof, root),
                  (leaf, m, n * 2, proof, root), (leaf, m, n // 2, proof, root),
                  (merkle.leaf_hash(b"Wrong"), m, n, proof, root),
                  (leaf, m, n, proof, merkle.EMPTY_ROOT), (leaf, m, n, proof, SOME_HASH),
                  (leaf, m, n, proof + [b""], root), (leaf, m, n, proof + [root], root),
                  (leaf, m, n, [root] + proof, root), (leaf, m, n, proof[:-1], root)]
        probes += [(leaf, m, n, flip(proof, i), root) for i in range(len(proof))]
        if len(proof) > 1:
            probes.append((leaf, m, n, proof[:1] + [SOME_HASH] + proof[1:], root))
        for probe in probes:
            if probe[1:3] == (m, n) and probe[3] == proof and probe[0] == leaf and probe[4] == root:
                continue  # a probe that equals the valid proof (e.g. m ^ 2 == m) proves nothing
            assert not merkle.verify_inclusion(*probe), (m, n, probe[1:3])
            assert not ref_verify_inclusion(*probe), (m, n, probe[1:3])


@pytest.mark.parametrize(("m", "n"), [(1, 2), (2, 5), (3, 7), (6, 8), (4, 9), (17, 70), (33, 64), (63, 70)])
def test_forged_consistency_rejected(m, n):
    old, new = MTH(0, m), MTH(0, n)
    proof = SUBPROOF(m, 0, n, True)
    assert merkle.verify_consistency(m, n, old, new, proof)
    probes = [(m - 1, n, old, new, proof), (m + 1, n, old, new, proof), (m, n * 2, old, new, proof),
              (m, n // 2, old, new, proof), (m, n, SOME_HASH, new, proof), (m, n, old, SOME_HASH, proof),
              (m, n, new, old, proof), (m, n, old, new, []), (m, n, old, new, proof + [old]),
              (m, n, old, new, [new] + proof), (m, n, old, new, [proof[0]] + proof), (m, n, old, new, proof[:-1])]
    probes += [(m, n, old, new, flip(proof, i)) for i in range(len(proof))]
    if m ^ 2 != m:
        probes.append((m ^ 2, n, old, new, proof))
    for probe in probes:
        assert not merkle.verify_consistency(*probe), probe[:2]
        assert not ref_verify_consistency(*probe), probe[:2]


def test_degenerate_consistency():
    root = MTH(0, 5)
    assert merkle.verify_consistency(5, 5, root, root, [])
    assert not merkle.verify_consistency(5, 5, root, MTH(0, 4), [])
    assert not merkle.verify_consistency(5, 5, root, root, [root])
    assert merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, root, [])
    assert not merkle.verify_consistency(0, 5, SOME_HASH, root, [])
    assert not merkle.verify_consistency(6, 5, root, root, [])
    with pytest.raises(ProvenanceError):
        merkle.consistency_ranges(6, 5)
    with pytest.raises(ProvenanceError):
        merkle.inclusion_ranges(5, 5)


# ---- signed tree heads ------------------------------------------------------------------------------------------


class Signer:
    def __init__(self):
        self.private = Ed25519PrivateKey.generate()
        self.public = self.private.public_key()
        self.hex = self.public.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()

    def sth(self, size: int, root: bytes, timestamp: int = 1_700_000_000_000) -> merkle.SignedTreeHead:
        message = merkle.tree_head_bytes(size, timestamp, root)
        return merkle.SignedTreeHead(size, root, timestamp, hashlib.sha256(bytes.fromhex(self.hex)).hexdigest(),
                                     self.hex, self.private.sign(message))


def test_tree_head_encoding_is_rfc6962_tree_head_signature():
    root = MTH(0, 7)
    signed = merkle.tree_head_bytes(7, 0x0102030405060708, root)
    assert len(signed) == 50
    assert signed[:2] == b"\x00\x01"  # version v1, signature_type tree_hash
    assert signed[2:10] == bytes.fromhex("0102030405060708") and signed[10:18] == (7).to_bytes(8, "big")
    assert signed[18:] == root


def test_tree_head_signature_checks():
    alice, mallory = Signer(), Signer()
    sth = alice.sth(7, MTH(0, 7))
    assert merkle.verify_tree_head(sth, alice.public) and merkle.verify_tree_head(sth, alice.hex)
    assert merkle.SignedTreeHead.from_json(sth.to_json()) == sth
    assert not merkle.verify_tree_head(sth, mallory.public)
    for field, value in [("tree_size", 8), ("timestamp", sth.timestamp + 1), ("root_hash", MTH(0, 6))]:
        forged = merkle.SignedTreeHead(**{**sth.__dict__, field: value})
        assert not merkle.verify_tree_head(forged, alice.public), field
    swapped = mallory.sth(7, MTH(0, 7))  # a valid signature by another key, relabelled as alice's
    relabelled = merkle.SignedTreeHead(**{**swapped.__dict__, "key_id": sth.key_id, "public_key": alice.hex})
    assert not merkle.verify_tree_head(relabelled, alice.public)
    with pytest.raises(ProvenanceError, match="not a signed tree head"):
        merkle.SignedTreeHead.from_json({"tree_size": 1})
    with pytest.raises(ProvenanceError, match="not a signed tree head"):
        merkle.SignedTreeHead.from_json('{"tree_size": 1, "root_hash": "zz"}')

"""The transparency log on real SQLite files (and a real PostgreSQL server when one can be started): proofs,
ownership rules, crash safety and tamper detection."""

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from genchain.errors import InputError, ProvenanceError
from genchain.provenance import merkle
from genchain.provenance.keys import create_identity
from genchain.provenance.ledger import Ledger
from genchain.provenance.ledger_records import transfer_body


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENCHAIN_HOME", str(tmp_path / "gc"))
    return tmp_path / "gc"


def digest(i: int) -> str:
    return hashlib.sha256(f"artefact {i}".encode()).hexdigest()


def artefact(i: int) -> dict:
    return {"sha256": digest(i), "manifest_sha256": hashlib.sha256(f"m{i}".encode()).hexdigest(), "signer": "k",
            "media": "image/png", "prompt": "café 夜"}


def filled(path: Path, n: int = 21) -> Ledger:
    ledger = Ledger.open(path)
    ledger.append_many([("artefact", artefact(i)) for i in range(n - 3)])
    for i in range(n - 3, n):
        ledger.append("artefact", artefact(i))
    ledger.signed_tree_head(n // 2)
    return ledger


def test_append_reopen_prove(home, tmp_path):
    path = tmp_path / "ledger.db"
    ledger = filled(path, 37)
    early = ledger.signed_tree_head(20)
    ledger.close()

    ledger = Ledger.open(path)
    assert ledger.size() == 37
    entries = list(ledger.entries())
    assert [e.index for e in entries] == list(range(37))
    assert entries[5].body == artefact(5) and entries[5].kind == "artefact"
    assert all(merkle.leaf_hash(e.leaf) == e.leaf_hash for e in entries)
    assert ledger.root_hash() == merkle.root([e.leaf_hash for e in entries])  # stored nodes == recomputed tree
    sth = ledger.signed_tree_head()
    assert merkle.verify_tree_head(sth, ledger.operator_public_key) and sth.tree_size == 37
    for e in entries:
        assert merkle.verify_inclusion(e.leaf_hash, e.index, 37, ledger.inclusion_proof(e.index), sth.root_hash)
        if e.index < 20:
            proof = ledger.inclusion_proof(e.index, 20)
            assert proof == merkle.inclusion_proof([x.leaf_hash for x in entries[:20]], e.index)
            assert merkle.verify_inclusion(e.leaf_hash, e.index, 20, proof, early.root_hash)
    for old in range(38):
        proof = ledger.consistency_proof(old)
        assert proof == merkle.consistency_proof([e.leaf_hash for e in entries], old)
        assert merkle.verify_consistency(old, 37, ledger.root_hash(old), sth.root_hash, proof)
    assert [e.index for e in ledger.find(digest(7).upper())] == [7]
    assert ledger.find("0" * 64) == []
    assert ledger.signed_tree_head(20) == early  # an issued head is handed out again, not re-signed
    with pytest.raises(InputError, match="out of range"):
        ledger.inclusion_proof(3, 38)
    with pytest.raises(InputError, match="no entry 40"):
        ledger.entry(40)
    assert ledger.audit().ok
    ledger.close()


def test_batch_is_all_or_nothing_and_bad_bodies_refused(home, tmp_path):
    alice, bob = create_identity("alice"), create_identity("bob")
    ledger = Ledger.open(tmp_path / "ledger.db")
    work = ledger.register(digest(100), alice, "CC-BY-4.0", "a poem")
    stolen = transfer_body(work.index, work.index, bob, bob)  # bob signs a transfer of alice's work
    with pytest.raises(ProvenanceError, match="only the current owner"):
        ledger.append_many([("artefact", artefact(1)), ("artefact", artefact(2)), ("transfer", stolen)])
    assert ledger.size() == 1 and ledger.find(digest(1)) == []
    ledger.append("artefact", artefact(1))  # the rolled-back batch left the in-memory tree edge intact
    assert ledger.audit().ok and ledger.size() == 2
    for kind, body, match in [("note", {"sha256": digest(1)}, "unknown ledger entry kind"),
                              ("artefact", {"media": "image/png"}, "needs 'sha256'"),
                              ("artefact", {"sha256": digest(1), "score": float("nan")}, "not plain JSON"),
                              ("register", {"sha256": digest(3)}, "needs title")]:
        with pytest.raises(InputError, match=match):
            ledger.append(kind, body)
    with pytest.raises(InputError, match="SPDX"):
        ledger.register(digest(4), alice, "CC BY 4.0", "bad licence")
    ledger.close()


def test_register_transfer_and_history(home, tmp_path):
    alice, bob, carol = create_identity("alice"), create_identity("bob"), create_identity("carol")
    ledger = Ledger.open(tmp_path / "ledger.db")
    reg = ledger.register(digest(1), alice, "CC-BY-4.0", "Spring")
    with pytest.raises(ProvenanceError, match="already registered"):
        ledger.register(digest(1), bob, "MIT", "mine now")
    forged = {**reg.body, "owner": {**reg.body["owner"]}, "sha256": digest(2)}  # alice's signature, other work
    with pytest.raises(ProvenanceError, match="not signed by its owner"):
        ledger.append("register", forged)

    with pytest.raises(ProvenanceError, match="only the current owner"):
        ledger.transfer(reg.index, bob, bob)  # a non-owner cannot move the work
    impostor = transfer_body(reg.index, reg.index, bob, carol)
    impostor["from"] = reg.body["owner"]  # claims to come from alice, signed by bob
    with pytest.raises(ProvenanceError, match="not signed by its owner"):
        ledger.append("transfer", impostor)

    to_bob = ledger.transfer(reg.index, alice, bob)
    assert ledger.owner(reg.index)["key_id"] == bob.key_id
    with pytest.raises(ProvenanceError, match="only the current owner"):
        ledger.transfer(reg.index, alice, carol)  # alice sold it; she cannot sell it twice
    ledger.transfer(reg.index, bob, alice)
    with pytest.raises(ProvenanceError, match="replayed"):
        ledger.append("transfer", to_bob.body)  # alice owns it again; her old signed transfer must not replay
    ledger.transfer(reg.index, alice, carol)
    chain = ledger.history(reg.index)
    assert [e.kind for e in chain] == ["register", "transfer", "transfer", "transfer"]
    assert [e.body["to"]["name"] for e in chain[1:]] == ["bob", "alice", "carol"]
    assert ledger.owner(reg.index)["name"] == "carol"
    with pytest.raises(InputError, match="not a copyright registration"):
        ledger.owner(chain[1].index)
    assert ledger.audit().ok
    ledger.close()


def test_operator_key_is_fixed(home, tmp_path):
    path = tmp_path / "ledger.db"
    operator = create_identity("operator")
    Ledger.open(path, operator).close()
    other = create_identity("other")
    with Ledger.open(path, other) as ledger:  # reading needs no key
        assert ledger.size() == 0 and ledger.operator_key_id == operator.key_id
        with pytest.raises(ProvenanceError, match="operated by key"):
            ledger.append("artefact", artefact(0))
    with Ledger.open(path) as ledger:  # no identity given: the local one holding the operator key signs
        assert ledger.append("artefact", artefact(0)).index == 0
        assert ledger.head().key_id == operator.key_id


CHILD = textwrap.dedent("""
    import sys
    from genchain.provenance.ledger import Ledger
    ledger = Ledger.open(sys.argv[1])
    i = ledger.size()
    while True:
        body = {"sha256": "%064x" % i, "pad": "x" * 2000}
        if i % 3:
            entry = ledger.append("artefact", body)
        else:
            entry = ledger.append_many([("artefact", body), ("artefact", {"sha256": "%064x" % (i + 1)})])[-1]
        i = entry.index + 1
        print(entry.index, flush=True)
""")


def test_kill_mid_append_loses_nothing_committed(home, tmp_path):
    path = tmp_path / "ledger.db"
    Ledger.open(path).close()
    committed = -1
    for _ in range(2):  # kill the writer twice, at arbitrary points of its append loop
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        start = committed
        for line in child.stdout:
            committed = int(line)
            if committed >= start + 25:
                break
        child.send_signal(signal.SIGKILL)
        child.wait()
    with Ledger.open(path) as ledger:
        size = ledger.size()
        assert committed + 1 <= size <= committed + 3  # every acknowledged append is there; at most one more batch
        report = ledger.audit()
        assert report.ok, report.problems
        assert all(ledger.entry(i).body["sha256"] == f"{i:064x}" for i in range(size))


def test_concurrent_writers_are_serialised(home, tmp_path):
    path = tmp_path / "ledger.db"
    Ledger.open(path).close()
    script = ("import sys\nfrom genchain.provenance.ledger import Ledger\nl = Ledger.open(sys.argv[1])\n"
              "for i in range(15): l.append('artefact', {'sha256': '%064x' % i, 'writer': sys.argv[2]})\nl.close()")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    writers = [subprocess.Popen([sys.executable, "-c", script, str(path), w], env=env) for w in "ab"]
    assert [w.wait() for w in writers] == [0, 0]
    with Ledger.open(path) as ledger:
        assert ledger.size() == 30 and ledger.audit().ok
        assert sorted(e.body["writer"] for e in ledger.entries()) == ["a"] * 15 + ["b"] * 15


# ---- tampering with the database behind the ledger's back ------------------------------------------------------


def flip_byte(value: bytes, position: int = 10) -> bytes:
    return value[:position] + bytes([value[position] ^ 0x01]) + value[position + 1:]


def tamper(path: Path, sql: str, *params) -> None:
    with sqlite3.connect(path) as db:
        db.execute(sql, params)


def leaf_of(path: Path, index: int) -> bytes:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT leaf FROM ledger_entries WHERE idx = ?", (index,)).fetchone()[0]


TAMPERING = {
    "entry byte": (lambda p: tamper(p, "UPDATE ledger_entries SET leaf = ? WHERE idx = 6", flip_byte(leaf_of(p, 6))),
                   "entry 6: its bytes no longer hash"),
    "leaf hash": (lambda p: tamper(p, "UPDATE ledger_entries SET leaf_hash = ? WHERE idx = 3", b"\x00" * 32),
                  "entry 3: its bytes no longer hash"),
    "kind column": (lambda p: tamper(p, "UPDATE ledger_entries SET kind = 'register' WHERE idx = 2"),
                    "entry 2: column kind"),
    "sha256 column": (lambda p: tamper(p, "UPDATE ledger_entries SET sha256 = ? WHERE idx = 4", digest(99)),
                      "entry 4: column sha256"),
    "deleted entry": (lambda p: tamper(p, "DELETE FROM ledger_entries WHERE idx = 9"), "entry 9 is missing"),
    "deleted last entry": (lambda p: tamper(p, "DELETE FROM ledger_entries WHERE idx = 20"),
                           "signed for 21 entries but the ledger holds 20"),
    "forged node": (lambda p: tamper(p, "UPDATE ledger_nodes SET hash = ? WHERE level = 2 AND idx = 1", b"\x11" * 32),
                    "tree node (level 2, index 1) differs"),
    "deleted node": (lambda p: tamper(p, "DELETE FROM ledger_nodes WHERE level = 1 AND idx = 0"),
                     "tree node (level 1, index 0) is missing"),
    "deleted edge node": (lambda p: tamper(p, "DELETE FROM ledger_nodes WHERE level = 4 AND idx = 0"),
                          "tree node (level 4, index 0) is missing"),
    "extra node": (lambda p: tamper(p, "INSERT INTO ledger_nodes VALUES (3, 7, ?)", b"\x22" * 32),
                   "tree node (level 3, index 7) does not belong"),
    "tree head": (lambda p: tamper(p, "UPDATE ledger_tree_heads SET tree_size = tree_size - 1"),
                  "signature does not verify"),
    "operator key": (lambda p: tamper(p, "UPDATE ledger_meta SET value = ? WHERE key = 'operator_public_key'",
                                      create_identity("mallory").public_hex), "signature does not verify"),
}


@pytest.mark.parametrize("damage", sorted(TAMPERING))
def test_audit_reports_each_kind_of_tampering(home, tmp_path, damage):
    path = tmp_path / "ledger.db"
    filled(path).close()
    change, expected = TAMPERING[damage]
    change(path)
    with Ledger.open(path) as ledger:
        report = ledger.audit()
    assert not report.ok
    assert any(expected in problem for problem in report.problems), report.problems


@pytest.mark.parametrize("sql", ["DELETE FROM ledger_entries WHERE idx = 20",
                                 "UPDATE ledger_nodes SET hash = zeroblob(32) WHERE level = 4 AND idx = 0"])
def test_operator_will_not_sign_over_a_changed_tree(home, tmp_path, sql):
    path = tmp_path / "ledger.db"
    filled(path).close()  # 21 entries: the right edge is node (4, 0), node (2, 4) and entry 20
    tamper(path, sql)
    with Ledger.open(path) as ledger:
        with pytest.raises(ProvenanceError, match="does not match the tree head its operator signed"):
            ledger.append("artefact", artefact(99))
        assert ledger.find(digest(99)) == []


def test_reading_a_changed_entry_fails(home, tmp_path):
    path = tmp_path / "ledger.db"
    filled(path).close()
    tamper(path, "UPDATE ledger_entries SET leaf = ? WHERE idx = 6", flip_byte(leaf_of(path, 6), 3))
    with Ledger.open(path) as ledger:
        with pytest.raises(ProvenanceError, match="entry 6"):
            ledger.entry(6)
        assert ledger.entry(5).index == 5


def test_damaged_and_foreign_files_give_provenance_errors(home, tmp_path):
    path = tmp_path / "ledger.db"
    filled(path, 300).close()
    data = path.read_bytes()
    truncated = tmp_path / "truncated.db"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ProvenanceError, match="damaged or truncated|lost"):
        with Ledger.open(truncated) as ledger:
            ledger.audit()
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(ProvenanceError, match="empty file"):
        Ledger.open(empty)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ProvenanceError, match="not a SQLite database"):
        Ledger.open(text)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE photos (id INTEGER)")
    with pytest.raises(ProvenanceError, match="not a genchain ledger"):
        Ledger.open(other)
    with pytest.raises(ProvenanceError, match="is a directory"):
        Ledger.open(tmp_path)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(data[:100] + os.urandom(len(data) - 100))  # a valid header, the pages overwritten
    with pytest.raises(ProvenanceError):
        Ledger.open(garbage)


# ---- PostgreSQL: the same code by URL, against the real server conftest.py starts ----------------------------


def test_postgresql_ledger(home, postgres_url):
    alice, bob = create_identity("alice"), create_identity("bob")
    with Ledger.open(postgres_url) as ledger:
        ledger.append_many([("artefact", artefact(i)) for i in range(12)])
        reg = ledger.register(digest(50), alice, "CC-BY-4.0", "Spring")
        ledger.transfer(reg.index, alice, bob)
        with pytest.raises(ProvenanceError, match="only the current owner"):
            ledger.transfer(reg.index, alice, bob)
    with Ledger.open(postgres_url) as ledger:
        assert ledger.size() == 14
        sth = ledger.signed_tree_head()
        leaves = [e.leaf_hash for e in ledger.entries()]
        assert sth.root_hash == merkle.root(leaves) and merkle.verify_tree_head(sth, ledger.operator_public_key)
        assert merkle.verify_inclusion(leaves[5], 5, 14, ledger.inclusion_proof(5), sth.root_hash)
        assert merkle.verify_consistency(7, 14, ledger.root_hash(7), sth.root_hash, ledger.consistency_proof(7))
        assert [e.index for e in ledger.find(digest(50))] == [12]
        assert ledger.owner(12)["name"] == "bob"
        assert ledger.audit().ok

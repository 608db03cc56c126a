"""``genchain ledger ...`` through the real command line entry point, on a real ledger file."""

import json
import sqlite3

import pytest

from genchain.cli import main
from genchain.provenance.keys import create_identity


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("GENCHAIN_HOME", str(tmp_path / "gc"))
    alice, bob = create_identity("alice"), create_identity("bob")
    work = tmp_path / "poem.txt"
    work.write_text("Shall I compare thee to a summer's day?\n", encoding="utf-8")
    return tmp_path, alice, bob, work


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_register_transfer_history_log(setup, capsys):
    tmp_path, alice, bob, work = setup
    db = str(tmp_path / "ledger.db")
    code, out, _ = run(capsys, "ledger", "register", str(work), "--owner", "alice", "--license", "CC-BY-4.0",
                       "--title", "Sonnet 18", "--ledger", db)
    assert code == 0 and "as entry 0" in out and "CC-BY-4.0" in out
    code, _, err = run(capsys, "ledger", "register", str(work), "--owner", "bob", "--license", "MIT", "--ledger", db)
    assert code == 2 and "already registered" in err
    code, _, err = run(capsys, "ledger", "transfer", "0", "--to", "bob", "--as", "bob", "--ledger", db)
    assert code == 2 and "error: registration 0 belongs to 'alice'" in err  # a non-owner cannot transfer
    code, out, _ = run(capsys, "ledger", "transfer", "0", "--to", "bob", "--ledger", db)  # --as found by key
    assert code == 0 and "from alice to bob" in out
    code, out, _ = run(capsys, "ledger", "history", "0", "--ledger", db)
    assert code == 0 and "Sonnet 18" in out and "current owner: bob" in out
    code, out, _ = run(capsys, "ledger", "log", "--ledger", db)
    assert code == 0 and "register" in out and "transfer" in out and "2 entries" in out
    code, out, _ = run(capsys, "ledger", "show", "1", "--ledger", db)
    assert json.loads(out)["body"]["to"]["name"] == "bob"
    code, _, err = run(capsys, "ledger", "show", "9", "--ledger", db)
    assert code == 2 and "no entry 9" in err


def test_proof_files_verify_offline_and_forgeries_fail(setup, capsys):
    tmp_path, alice, _, work = setup
    db = str(tmp_path / "ledger.db")
    for i in range(5):
        work.write_text(f"draft {i}\n")
        assert run(capsys, "ledger", "register", str(work), "--owner", "alice", "--license", "MIT",
                   "--ledger", db)[0] == 0
    code, out, _ = run(capsys, "ledger", "prove", "3", "--json", "--ledger", db)
    proof = json.loads(out)
    assert code == 0 and proof["index"] == 3 and proof["tree_size"] == 5 and proof["how"]
    operator = proof["tree_head"]["public_key"]
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(proof))
    code, out, _ = run(capsys, "ledger", "verify-proof", str(path), "--public-key", operator)
    assert code == 0 and out.startswith("verified: entry 3")

    forged = dict(proof, leaf=proof["leaf"].replace("MIT", "GPL-3.0"))
    assert forged["leaf"] != proof["leaf"]
    path.write_text(json.dumps(forged))
    code, _, err = run(capsys, "ledger", "verify-proof", str(path), "--public-key", operator)
    assert code == 2 and "entry text was altered" in err
    first = proof["proof"][0]
    flipped = first[:-2] + ("00" if first[-2:] != "00" else "ff")  # a real change whatever the last byte was
    forged = dict(proof, proof=[flipped] + proof["proof"][1:])
    path.write_text(json.dumps(forged))
    assert run(capsys, "ledger", "verify-proof", str(path), "--public-key", operator)[0] == 2
    path.write_text(json.dumps(proof))
    code, _, err = run(capsys, "ledger", "verify-proof", str(path), "--public-key", alice.public_hex)
    assert code == 2 and "not signed by the key you gave" in err

    code, out, _ = run(capsys, "ledger", "consistency", "2", "--json", "--ledger", db)
    path.write_text(out)
    code, out, _ = run(capsys, "ledger", "verify-proof", str(path), "--public-key", operator)
    assert code == 0 and "extends the log of 2 entries" in out
    code, out, _ = run(capsys, "ledger", "sth", "--size", "4", "--ledger", db)
    assert json.loads(out)["tree_size"] == 4
    code, _, err = run(capsys, "ledger", "prove", "3", "--size", "9", "--ledger", db)
    assert code == 2 and "out of range" in err


def test_audit_passes_then_reports_tampering(setup, capsys):
    tmp_path, _, _, work = setup
    db = tmp_path / "ledger.db"
    assert run(capsys, "ledger", "register", str(work), "--owner", "alice", "--license", "MIT",
               "--ledger", str(db))[0] == 0
    code, out, _ = run(capsys, "ledger", "audit", "--ledger", str(db))
    assert code == 0 and "intact" in out
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE ledger_entries SET leaf = replace(leaf, 'MIT', 'GPL') WHERE idx = 0")
    code, out, err = run(capsys, "ledger", "audit", "--ledger", str(db), "--json")
    report = json.loads(out)
    assert code == 2 and not report["ok"] and "failed its audit" in err
    assert any(p.startswith("entry 0: its bytes no longer hash") for p in report["problems"])


def test_missing_and_foreign_ledgers_are_clear_errors(setup, capsys):
    tmp_path, _, _, _ = setup
    code, _, err = run(capsys, "ledger", "log", "--ledger", str(tmp_path / "nope.db"))
    assert code == 2 and "no ledger at" in err
    (tmp_path / "notes.txt").write_text("not a database")
    code, _, err = run(capsys, "ledger", "audit", "--ledger", str(tmp_path / "notes.txt"))
    assert code == 2 and "not a ledger" in err
    code, _, err = run(capsys, "ledger", "log", "--ledger", "mysql://x@y/z")
    assert code == 2 and err.startswith("error: ")

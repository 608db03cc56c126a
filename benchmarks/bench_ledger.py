"""Transparency ledger: append rate for 1M entries in SQLite, proof sizes and verification time (log2 n growth),
and tamper detection over >= 1,000 random one-byte changes of stored rows.

1. Appends. ``Ledger.append_many`` in batches (one transaction per batch: entries, completed tree nodes, the
   re-signed tree head) up to ``--entries`` (1M by default), and ``Ledger.append`` with one durable transaction
   per entry (``synchronous=FULL``: one WAL fsync each) on ``--single`` entries. The peer is the same rows
   inserted into a plain one-table SQLite file in the same batches, same pragmas, with no tree and no signature:
   what the Merkle bookkeeping costs.
2. Proofs at sizes 1e3..1e6 of that ledger: inclusion and consistency proof length (hashes, bytes), time to build
   one from the database and to verify it. The peer is the naive way to check membership without stored nodes:
   read every leaf hash up to that size and recompute the root (RFC 6962 MTH). ``pymerkle`` (the obvious
   library peer) is not installed here and was not installed for this.
3. Tamper (the ledger-row part of benchmark 4): a ledger of ``--tamper-entries`` entries (artefacts, copyright
   registrations and transfers, issued tree heads) is copied ``--trials`` times and one byte of one stored value
   changed each time, then ``Ledger.open`` + ``audit`` run: detected = the audit reports a problem or the ledger
   refuses to open. Two ways to change the byte: through SQL (a table drawn uniformly, then any row and column;
   the value keeps its SQL type), and in the file itself, bypassing SQLite (a byte inside a stored value found
   exactly once in the file). A change the database itself refuses (a duplicate primary key) is redrawn.

    python benchmarks/bench_ledger.py [--entries 1000000] [--batch 10000] [--single 2000] [--trials 1000]
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import random
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path

from tqdm import tqdm

from common import WORK, write_results
from genchain.errors import ProvenanceError
from genchain.provenance import merkle
from genchain.provenance.canonical import canonical_json
from genchain.provenance.keys import create_identity
from genchain.provenance.ledger import Ledger

SIZES = [1_000, 10_000, 100_000, 1_000_000]


def body(i: int) -> dict:
    """An artefact entry as the signing step writes it."""
    return {"sha256": hashlib.sha256(b"artefact %d" % i).hexdigest(),
            "manifest_sha256": hashlib.sha256(b"manifest %d" % i).hexdigest(),
            "signer": "9f2c" * 16, "media": "image/png", "kind": "image"}


def fresh(path: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def plain_sqlite(path: Path) -> sqlite3.Connection:
    """The peer: one table holding the same entry bytes, same journal and durability settings, no tree."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE entries (idx INTEGER PRIMARY KEY, kind TEXT, timestamp INTEGER, sha256 TEXT, leaf BLOB)")
    db.execute("CREATE INDEX ix_sha256 ON entries (sha256)")
    return db


def plain_row(i: int) -> tuple:
    b, ts = body(i), time.time_ns() // 1_000_000
    return i, "artefact", ts, b["sha256"], canonical_json({"body": b, "kind": "artefact", "timestamp": ts})


def bench_appends(work: Path, n: int, batch: int, single: int) -> tuple[dict, Path]:
    path = fresh(work / "ledger-1m.db")
    ledger = Ledger.open(path)
    checkpoints, done, started = {}, 0, time.perf_counter()
    with tqdm(total=n, unit="entry", desc="append_many", file=sys.stderr) as bar:
        while done < n:
            count = min(batch, n - done)
            ledger.append_many([("artefact", body(i)) for i in range(done, done + count)])
            done += count
            bar.update(count)
            if done in SIZES:
                checkpoints[done] = time.perf_counter() - started
    total = time.perf_counter() - started
    ledger.close()

    plain = plain_sqlite(fresh(work / "plain.db"))
    started = time.perf_counter()
    for start in tqdm(range(0, n, batch), desc="plain sqlite", file=sys.stderr):
        rows = [plain_row(i) for i in range(start, min(n, start + batch))]
        plain.execute("BEGIN IMMEDIATE")
        plain.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?)", rows)
        plain.execute("COMMIT")
    plain_total = time.perf_counter() - started
    plain.close()

    one = Ledger.open(fresh(work / "single.db"))
    started = time.perf_counter()
    for i in tqdm(range(single), desc="append (1 txn each)", file=sys.stderr):
        one.append("artefact", body(i))
    single_total = time.perf_counter() - started
    one.close()
    plain = plain_sqlite(fresh(work / "plain-single.db"))
    started = time.perf_counter()
    for i in range(single):
        plain.execute("BEGIN IMMEDIATE")
        plain.execute("INSERT INTO entries VALUES (?, ?, ?, ?, ?)", plain_row(i))
        plain.execute("COMMIT")
    plain_single = time.perf_counter() - started
    plain.close()
    return {
        "entries": n, "batch": batch, "seconds": round(total, 2), "appends_per_s": round(n / total),
        "cumulative_seconds_at": {str(k): round(v, 2) for k, v in checkpoints.items()},
        "file_bytes": path.stat().st_size,
        "peer_plain_sqlite": {"seconds": round(plain_total, 2), "inserts_per_s": round(n / plain_total)},
        "ratio_vs_plain": round(plain_total / total, 3),
        "single_transaction_per_append": {"entries": single, "appends_per_s": round(single / single_total, 1),
                                          "peer_plain_sqlite_per_s": round(single / plain_single, 1)},
    }, path


def bench_proofs(path: Path, n: int, samples: int, rng: random.Random) -> dict:
    ledger = Ledger.open(path)
    rows = {}
    for size in [s for s in SIZES if s <= n]:
        head = ledger.signed_tree_head(size)
        lengths, build, verify = [], [], []
        for _ in range(samples):
            index = rng.randrange(size)
            entry = ledger.entry(index)
            t0 = time.perf_counter()
            proof = ledger.inclusion_proof(index, size)
            t1 = time.perf_counter()
            ok = merkle.verify_inclusion(entry.leaf_hash, index, size, proof, head.root_hash)
            t2 = time.perf_counter()
            assert ok, (index, size)
            lengths.append(len(proof))
            build.append(t1 - t0)
            verify.append(t2 - t1)
        c_lengths, c_verify = [], []
        for _ in range(samples):
            old = rng.randrange(1, size)
            proof = ledger.consistency_proof(old, size)
            old_root = ledger.root_hash(old)
            t0 = time.perf_counter()
            ok = merkle.verify_consistency(old, size, old_root, head.root_hash, proof)
            c_verify.append(time.perf_counter() - t0)
            assert ok, (old, size)
            c_lengths.append(len(proof))
        t0 = time.perf_counter()
        stored_root = ledger.root_hash(size)
        root_from_nodes = time.perf_counter() - t0
        t0 = time.perf_counter()
        naive_root = merkle.root(_leaf_hashes(path, size))
        naive = time.perf_counter() - t0
        assert naive_root == stored_root == head.root_hash
        rows[str(size)] = {
            "log2_size": round(math.log2(size), 2),
            "inclusion_hashes_mean": round(statistics.mean(lengths), 2), "inclusion_hashes_max": max(lengths),
            "inclusion_bytes_max": 32 * max(lengths),
            "inclusion_build_ms_median": round(1e3 * statistics.median(build), 3),
            "inclusion_verify_us_median": round(1e6 * statistics.median(verify), 1),
            "consistency_hashes_mean": round(statistics.mean(c_lengths), 2),
            "consistency_hashes_max": max(c_lengths), "consistency_bytes_max": 32 * max(c_lengths),
            "consistency_verify_us_median": round(1e6 * statistics.median(c_verify), 1),
            "root_from_stored_nodes_ms": round(1e3 * root_from_nodes, 3),
            "peer_naive_root_from_all_leaves_ms": round(1e3 * naive, 1),
        }
    started = time.perf_counter()
    report = ledger.audit(progress=True)
    audit_seconds = time.perf_counter() - started
    ledger.close()
    return {"samples_per_size": samples, "by_size": rows,
            "audit_full": {"entries": report.size, "ok": report.ok, "seconds": round(audit_seconds, 1)}}


def _leaf_hashes(path: Path, size: int) -> list[bytes]:
    """Leaf hashes straight from SQLite (the naive peer reads them all; ``Ledger.entries`` would also decode)."""
    with sqlite3.connect(path) as db:
        return [h for (h,) in db.execute("SELECT leaf_hash FROM ledger_entries WHERE idx < ? ORDER BY idx", (size,))]


# ---- tamper ------------------------------------------------------------------------------------------------------


def tamper_base(work: Path, n: int) -> Path:
    path = fresh(work / "tamper-base.db")
    alice, bob = create_identity("alice", overwrite=True), create_identity("bob", overwrite=True)
    ledger = Ledger.open(path)
    for start in range(0, n, 250):
        ledger.append_many([("artefact", body(i)) for i in range(start, min(n, start + 250) - 2)])
        reg = ledger.register(hashlib.sha256(b"work %d" % start).hexdigest(), alice, "CC-BY-4.0", f"work {start}")
        ledger.transfer(reg.index, alice, bob)
        ledger.signed_tree_head()
    ledger.close()
    return path


def sql_cells(path: Path) -> dict[str, list[tuple[str, str, str, tuple]]]:
    """Every (table, column, where-clause, key) cell of every row, by table (trials pick a table first, so the
    few rows of tree heads and meta are changed as often as the many entry and node rows)."""
    tables = {"ledger_entries": ("idx",), "ledger_nodes": ("level", "idx"), "ledger_tree_heads":
              ("tree_size", "timestamp"), "ledger_meta": ("key",)}
    cells: dict[str, list] = {}
    with sqlite3.connect(path) as db:
        for table, key in tables.items():
            columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
            where = " AND ".join(f"{k} = ?" for k in key)
            cells[table] = [(table, column, where, row) for row in db.execute(f"SELECT {', '.join(key)} FROM {table}")
                            for column in columns]
    return cells


def change_sql(path: Path, cell: tuple, rng: random.Random) -> str:
    table, column, where, key = cell
    with sqlite3.connect(path) as db:
        (value,) = db.execute(f"SELECT {column} FROM {table} WHERE {where}", key).fetchone()
        raw = value if isinstance(value, bytes) else str(value).encode()
        position = rng.randrange(len(raw))
        changed = raw[:position] + bytes([rng.choice([b for b in range(256) if b != raw[position]])]) + \
            raw[position + 1:]
        if isinstance(value, int):
            try:
                new = int(changed.decode())
            except (UnicodeDecodeError, ValueError):
                new = changed  # no longer a number: SQLite stores what it is given
        elif isinstance(value, str):
            try:
                new = changed.decode()
            except UnicodeDecodeError:
                new = changed
        else:
            new = changed
        db.execute(f"UPDATE {table} SET {column} = ? WHERE {where}", (new, *key))
    return f"{table}.{column}"


def unique_values(path: Path) -> list[tuple[str, bytes]]:
    """Stored values (blobs and text) that occur exactly once in the file, so a byte of them can be found."""
    data = path.read_bytes()
    values = []
    with sqlite3.connect(path) as db:
        for table, columns in {"ledger_entries": ("leaf", "leaf_hash"), "ledger_nodes": ("hash",),
                               "ledger_tree_heads": ("root_hash", "signature"), "ledger_meta": ("value",)}.items():
            for column in columns:
                for (value,) in db.execute(f"SELECT {column} FROM {table}"):
                    raw = value if isinstance(value, bytes) else str(value).encode()
                    if len(raw) >= 8 and data.count(raw) == 1:
                        values.append((f"{table}.{column}", raw))
    return values


def detected(path: Path) -> bool:
    try:
        with Ledger.open(path) as ledger:
            return not ledger.audit().ok
    except ProvenanceError:
        return True


def bench_tamper(work: Path, n: int, trials: int, rng: random.Random) -> dict:
    base = tamper_base(work, n)
    with Ledger.open(base) as ledger:
        assert ledger.audit().ok
    cells, values = sql_cells(base), unique_values(base)
    data = base.read_bytes()
    trial = work / "tamper-trial.db"
    results = {}
    for mode in ("sql", "file"):
        caught, refused, where = 0, 0, {}
        for _ in tqdm(range(trials), desc=f"tamper ({mode})", file=sys.stderr):
            while True:
                shutil.copyfile(base, fresh(trial))
                if mode == "file":
                    what, value = rng.choice(values)
                    offset = data.index(value) + rng.randrange(len(value))
                    with open(trial, "r+b") as fh:
                        fh.seek(offset)
                        fh.write(bytes([data[offset] ^ rng.randrange(1, 256)]))
                    break
                try:
                    what = change_sql(trial, rng.choice(cells[rng.choice(sorted(cells))]), rng)
                    break
                except sqlite3.IntegrityError:
                    refused += 1  # the database refused the change (e.g. a duplicate key): draw another
            hit = detected(trial)
            caught += hit
            where.setdefault(what, [0, 0])
            where[what][0] += hit
            where[what][1] += 1
        results[mode] = {"trials": trials, "detected": caught, "detection_rate": caught / trials,
                         "redrawn_refused_by_database": refused,
                         "by_column": {k: {"detected": v[0], "trials": v[1]} for k, v in sorted(where.items())}}
    return {"ledger_entries": n, "stored_cells": {t: len(c) for t, c in cells.items()},
            "unique_values_in_file": len(values), **results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--single", type=int, default=2_000)
    parser.add_argument("--samples", type=int, default=200, help="proofs per size")
    parser.add_argument("--trials", type=int, default=1_000, help="tamper trials per mode")
    parser.add_argument("--tamper-entries", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = WORK / "ledger"
    work.mkdir(parents=True, exist_ok=True)
    os.environ["GENCHAIN_HOME"] = str(work / "home")  # the operator key of these throwaway ledgers
    rng = random.Random(args.seed)

    appends, path = bench_appends(work, args.entries, args.batch, args.single)
    single_row = appends["single_transaction_per_append"]
    print(f"append_many: {appends['appends_per_s']:,} entries/s for {args.entries:,} entries; plain SQLite inserts "
          f"{appends['peer_plain_sqlite']['inserts_per_s']:,}/s (ratio {appends['ratio_vs_plain']:.2f}); one "
          f"transaction per append: {single_row['appends_per_s']}/s (plain {single_row['peer_plain_sqlite_per_s']}/s)")
    proofs = bench_proofs(path, args.entries, args.samples, rng)
    for size, row in proofs["by_size"].items():
        print(f"size {int(size):>9,}: inclusion {row['inclusion_hashes_max']} hashes ({row['inclusion_bytes_max']} B),"
              f" built in {row['inclusion_build_ms_median']} ms, verified in {row['inclusion_verify_us_median']} us;"
              f" consistency <= {row['consistency_hashes_max']} "
              f"hashes; root from nodes {row['root_from_stored_nodes_ms']} ms, naive "
              f"{row['peer_naive_root_from_all_leaves_ms']} ms")
    print(f"audit of {proofs['audit_full']['entries']:,} entries: {proofs['audit_full']['seconds']} s, "
          f"ok={proofs['audit_full']['ok']}")
    tamper = bench_tamper(work, args.tamper_entries, args.trials, rng)
    for mode in ("sql", "file"):
        print(f"tamper ({mode}): {tamper[mode]['detected']}/{tamper[mode]['trials']} one-byte changes detected")

    command = "python benchmarks/bench_ledger.py" + "".join(
        f" --{k.replace('_', '-')} {v}" for k, v in vars(args).items()
        if v != parser.get_default(k))
    write_results("ledger", {
        "claim": "ledger: appends/s for 1M entries in SQLite, O(log n) proofs, 100% detection of one-byte row changes",
        "command": command,
        "peers": {"appends": "the same rows inserted into a plain one-table SQLite file (same batches and pragmas)",
                  "proofs": "naive: read all leaf hashes up to the size and recompute the RFC 6962 root",
                  "pymerkle": "not installed here, and not installed for this benchmark"},
        "appends": appends, "proofs": proofs, "tamper": tamper})


if __name__ == "__main__":
    main()

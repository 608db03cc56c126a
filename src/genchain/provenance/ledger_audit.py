"""``audit``: recompute the whole log from its stored bytes and report every row that does not check out.

Nothing stored is trusted. In one pass over the entries, in index order, the audit

1. checks the indices run 0, 1, 2, ... with no gap (a deleted row),
2. re-hashes every entry's stored bytes and compares with its stored leaf hash, and checks the bytes are a
   canonical entry whose kind, timestamp, ``sha256`` and ``ref`` columns agree with them (a changed row),
3. rebuilds the Merkle tree from those recomputed leaf hashes and compares every perfect subtree it completes with
   the stored node (a forged or changed node), and reports stored nodes that no tree of this size has;
4. checks every issued tree head and the per-commit head: signed by the operator key, and the root the operator
   signed equals the recomputed root at that size (a rewritten history, or entries deleted from the end).

On SQLite it first runs ``PRAGMA quick_check`` (a truncated or overwritten page). The report names the entry or
node and the kind of damage. What it cannot see: a log rolled back to an earlier state *together with* its
signed heads; only heads kept elsewhere (``genchain ledger consistency``, gossip) reveal that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlalchemy import Connection, and_, func, or_, select
from tqdm import tqdm

from genchain.errors import ProvenanceError
from genchain.provenance import ledger_store as store
from genchain.provenance.keys import public_key_from_text, raw_public_bytes
from genchain.provenance.ledger_records import decode_leaf
from genchain.provenance.merkle import EMPTY_ROOT, Frontier, SignedTreeHead, leaf_hash, verify_tree_head

CHUNK = 20_000
MAX_LISTED = 200


@dataclass
class AuditReport:
    """What ``audit`` checked and every problem found (the first ``MAX_LISTED`` are listed)."""

    size: int = 0
    root_hash: bytes | None = None
    entries_checked: int = 0
    nodes_checked: int = 0
    tree_heads_checked: int = 0
    operator_key_id: str = ""
    problems: list[str] = field(default_factory=list)
    problems_total: int = 0

    @property
    def ok(self) -> bool:
        return self.problems_total == 0

    def add(self, problem: str) -> None:
        self.problems_total += 1
        if len(self.problems) < MAX_LISTED:
            self.problems.append(problem)

    def summary(self) -> str:
        verdict = "intact" if self.ok else f"{self.problems_total} problem(s)"
        root = self.root_hash.hex() if self.root_hash is not None else "not recomputed"
        return (f"{self.size} entries, {self.nodes_checked} tree nodes, {self.tree_heads_checked} signed tree heads "
                f"checked against operator key {self.operator_key_id[:16]}...: {verdict}; root {root}")


def audit(ledger, public_key: str | None = None, progress: bool = False) -> AuditReport:
    """Check ``ledger`` end to end; ``public_key`` (hex or PEM) is the operator key you expect, if you know it."""
    report = AuditReport(operator_key_id=ledger.operator_key_id)
    if public_key is not None:
        expected = raw_public_bytes(public_key_from_text(public_key)).hex()
        if expected != ledger.operator_public_key:
            report.add(f"the ledger's operator key {ledger.operator_key_id[:16]}... is not the key you gave: "
                       "a substituted key (every signature below was checked against the stored one)")
    with ledger._read() as conn:
        for line in store.sqlite_integrity(conn):
            report.add(f"database file: {line}")
        report.size = store.current_size(conn)
        heads = _stored_heads(conn, ledger, report)
        roots = _check_entries_and_nodes(conn, report, {h.tree_size for _, h in heads}, progress)
        _check_extra_nodes(conn, report)
    for where, head in heads:
        report.tree_heads_checked += 1
        if not verify_tree_head(head, ledger.operator_public_key):
            report.add(f"{where} (size {head.tree_size}): the operator's signature does not verify (row changed)")
        elif head.tree_size > report.size:
            report.add(f"{where} is signed for {head.tree_size} entries but the ledger holds {report.size}: "
                       "entries were deleted from the end")
        elif head.tree_size in roots and roots[head.tree_size] != head.root_hash:
            report.add(f"{where} (size {head.tree_size}): the signed root differs from the recomputed root: "
                       "history was rewritten")
    report.root_hash = roots.get(report.size)
    return report


def _stored_heads(conn: Connection, ledger, report: AuditReport) -> list[tuple[str, SignedTreeHead]]:
    """The per-commit head and every issued head, as signed statements to check."""
    heads = []
    text = conn.execute(select(store.meta.c.value).where(store.meta.c.key == "head")).scalar()
    try:
        head = SignedTreeHead.from_json(text or "")
    except ProvenanceError as err:
        report.add(f"the ledger's current head is unreadable ({err})")
    else:
        heads.append(("the current head", head))
        if head.tree_size < report.size:
            report.add(f"the current head covers {head.tree_size} entries but {report.size} are stored: "
                       "entries were added without the operator")
    for row in conn.execute(select(store.tree_heads).order_by(store.tree_heads.c.timestamp)):
        heads.append((f"tree head issued at {row.timestamp}",
                      store.stored_head(row, ledger.operator_key_id, ledger.operator_public_key)))
    return heads


def _check_entries_and_nodes(conn: Connection, report: AuditReport, sizes: set[int],
                             progress: bool) -> dict[int, bytes]:
    """Stream the entries; rebuild the tree; compare nodes chunk by chunk. Returns the roots at ``sizes``."""
    roots = {0: EMPTY_ROOT}
    frontier: Frontier | None = Frontier()
    expected = 0
    bar = tqdm(total=report.size, unit="entry", desc="audit", disable=not progress)
    while True:
        rows = conn.execute(select(store.entries).where(store.entries.c.idx >= expected)
                            .order_by(store.entries.c.idx).limit(CHUNK)).all()
        if not rows:
            break
        start, computed = expected, {}
        for row in rows:
            index = int(row.idx)
            if index != expected:
                report.add(f"entries {expected}..{index - 1} are missing (rows deleted)" if index - 1 > expected
                           else f"entry {expected} is missing (row deleted)")
                frontier = None  # the tree above a hole cannot be rebuilt; entries are still checked one by one
            digest = _check_entry(row, report)
            report.entries_checked += 1
            if frontier is not None:
                for level, i, h in frontier.append(digest):
                    computed[(level, i)] = h
                if frontier.size in sizes or frontier.size == report.size:
                    roots[frontier.size] = frontier.root()
            expected = index + 1
        bar.update(len(rows))
        if computed:
            _compare_nodes(conn, report, computed, start, expected)
    bar.close()
    if frontier is None:
        report.add("the tree above the missing entries was not rebuilt; nodes and roots there are unchecked")
    return roots


def _check_entry(row, report: AuditReport) -> bytes:
    """The recomputed leaf hash of one stored entry, after checking its columns against its bytes."""
    leaf, where = store.blob(row.leaf), f"entry {row.idx}"
    digest = leaf_hash(leaf)
    if not isinstance(row.leaf, bytes) or digest != store.blob(row.leaf_hash):
        report.add(f"{where}: its bytes no longer hash to its stored leaf hash (row changed)")
    try:
        kind, timestamp, body = decode_leaf(leaf)
    except (ValueError, UnicodeDecodeError) as err:
        report.add(f"{where}: its bytes are not a canonical entry ({err})")
        return digest
    sha256 = body.get("sha256") if kind != "transfer" else None
    ref = body.get("registration") if kind == "transfer" else None
    for column, want in (("kind", kind), ("timestamp", timestamp), ("sha256", sha256), ("ref", ref)):
        if getattr(row, column) != want:
            report.add(f"{where}: column {column} is {getattr(row, column)!r} but the entry says {want!r} "
                       "(row changed)")
    return digest


def _compare_nodes(conn: Connection, report: AuditReport, computed: dict[tuple[int, int], bytes],
                   start: int, end: int) -> None:
    """Compare the nodes completed by entries ``[start, end)`` with the stored ones (one range query per level)."""
    stored = {}
    for level in sorted({lv for lv, _ in computed}):
        lo, hi = start >> level, (end >> level) - 1
        rows = conn.execute(select(store.nodes.c.idx, store.nodes.c.hash).where(
            store.nodes.c.level == level, store.nodes.c.idx >= lo, store.nodes.c.idx <= hi))
        stored.update(((level, int(i)), store.blob(h)) for i, h in rows)
    for key, h in computed.items():
        report.nodes_checked += 1
        if key not in stored:
            report.add(f"tree node (level {key[0]}, index {key[1]}) is missing (row deleted)")
        elif stored[key] != h:
            report.add(f"tree node (level {key[0]}, index {key[1]}) differs from the hash of the entries below it "
                       "(node forged or changed)")


def _check_extra_nodes(conn: Connection, report: AuditReport) -> None:
    """Stored nodes that no tree of this size has: outside the levels, or past the complete subtrees."""
    n = report.size
    beyond = [and_(store.nodes.c.level == level, store.nodes.c.idx >= n >> level)
              for level in range(1, max(n.bit_length(), 1))]
    outside = or_(store.nodes.c.level < 1, store.nodes.c.level >= max(n.bit_length(), 1), store.nodes.c.idx < 0,
                  *beyond)
    count = conn.execute(select(func.count()).select_from(store.nodes).where(outside)).scalar() or 0
    for row in conn.execute(select(store.nodes.c.level, store.nodes.c.idx).where(outside).limit(5)):
        report.add(f"tree node (level {row.level}, index {row.idx}) does not belong to a tree of {n} entries "
                   "(row added or changed)")
    if count > 5:
        report.add(f"... and {count - 5} more such nodes")


def report_json(report: AuditReport) -> str:
    return json.dumps({"ok": report.ok, "size": report.size, "root_hash": report.root_hash.hex()
                       if report.root_hash else None, "entries_checked": report.entries_checked,
                       "nodes_checked": report.nodes_checked, "tree_heads_checked": report.tree_heads_checked,
                       "operator_key_id": report.operator_key_id, "problems_total": report.problems_total,
                       "problems": report.problems}, indent=2)

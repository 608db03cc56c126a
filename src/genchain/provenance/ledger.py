"""An append-only transparency log in the style of Certificate Transparency (RFC 6962 / RFC 9162), without a coin.

Every entry (an artefact, a copyright registration, a transfer of ownership) is a leaf of a Merkle tree
(:mod:`genchain.provenance.merkle`); the log operator signs tree heads (size, root, time) with its Ed25519 key.
Anyone holding that public key can then check, without trusting the database, that an entry is in the log
(inclusion proof) and that a later tree extends an earlier one (consistency proof): the log can only grow.
Storage is :mod:`genchain.provenance.ledger_store` (SQLite by default, PostgreSQL by URL); what the entries say
and when they are refused is :mod:`genchain.provenance.ledger_records`; ``audit`` is
:mod:`genchain.provenance.ledger_audit`.

Example::

    with Ledger.open() as ledger:                    # $GENCHAIN_HOME/ledger.db, operator key "default"
        entry = ledger.append("artefact", {"sha256": digest, "manifest_sha256": m, "signer": key_id})
        sth = ledger.signed_tree_head()
        proof = ledger.inclusion_proof(entry.index, sth.tree_size)
        assert verify_inclusion(entry.leaf_hash, entry.index, sth.tree_size, proof, sth.root_hash)
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, insert, select, update

from genchain.errors import InputError, ProvenanceError
from genchain.provenance import ledger_store as store
from genchain.provenance.keys import (
    Identity,
    ensure_identity,
    key_id,
    list_identities,
    load_identity,
    public_key_from_text,
)
from genchain.provenance.ledger_records import (
    Entry,
    check_body,
    check_transfer,
    decode_leaf,
    encode_leaf,
    register_body,
    transfer_body,
)
from genchain.provenance.merkle import (
    EMPTY_ROOT,
    Frontier,
    SignedTreeHead,
    consistency_ranges,
    fold,
    inclusion_ranges,
    leaf_hash,
    perfect_subtrees,
    tree_head_bytes,
    verify_tree_head,
)

__all__ = ["Entry", "Ledger", "SignedTreeHead"]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Ledger:
    """A Merkle-tree log in a database; open it with :meth:`Ledger.open`, close it (or use ``with``)."""

    def __init__(self, engine, name: str, operator_public_hex: str, identity: Identity | None) -> None:
        self._engine = engine
        self.name = name
        self.operator_public_key = operator_public_hex
        self.operator_key_id = key_id(public_key_from_text(operator_public_hex))
        self._identity = identity
        self._frontier: Frontier | None = None  # the right edge of the tree at the last size we saw
        self._signed_head: str | None = None  # the head this object signed last: no need to verify it again

    @classmethod
    def open(cls, url: str | Path | None = None, identity: Identity | None = None) -> Ledger:
        """Open (or create) the ledger at ``url``: a path, ``sqlite:///PATH`` or ``postgresql://...``.

        Args:
            url: where the ledger lives; default ``$GENCHAIN_HOME/ledger.db``.
            identity: the log operator, who signs tree heads. A new ledger records this key (default: identity
                "default", created on first use); an existing one is signed by the key it recorded, and when
                ``identity`` is None the local identity holding that key is used.
        """
        engine, name = store.open_engine(url)
        try:
            with store.database_errors(name):
                rows = store.initialise(engine, name)
                if not rows:
                    identity = identity or ensure_identity()[0]
                    rows = cls._create(engine, identity)
                if rows.get("format") != store.FORMAT or not isinstance(rows.get("operator_public_key"), str):
                    raise ProvenanceError(f"{name} is not a {store.FORMAT} ledger, or its meta table was damaged "
                                          f"(format {rows.get('format')!r}); check the --ledger location")
                ledger = cls(engine, name, rows["operator_public_key"], identity)
                with ledger._read() as conn:  # reads the newest pages: most truncated files fail here already
                    store.current_size(conn)
            return ledger
        except BaseException:
            engine.dispose()
            raise

    @staticmethod
    def _create(engine, identity: Identity) -> dict[str, str]:
        with store.write_transaction(engine) as conn:
            existing = {r.key: r.value for r in conn.execute(select(store.meta.c.key, store.meta.c.value))}
            if existing:  # another process created it while we looked
                return existing
            timestamp = now_ms()
            head = SignedTreeHead(0, EMPTY_ROOT, timestamp, identity.key_id, identity.public_hex,
                                  identity.sign(tree_head_bytes(0, timestamp, EMPTY_ROOT)))
            rows = {"format": store.FORMAT, "operator_public_key": identity.public_hex,
                    "head": json.dumps(head.to_json())}
            conn.execute(insert(store.meta), [{"key": k, "value": v} for k, v in rows.items()])
            return rows

    def close(self) -> None:
        """Fold SQLite's write-ahead log into the file (best effort) and release the connections."""
        try:
            with store.database_errors(self.name):
                store.checkpoint(self._engine)
        except ProvenanceError:
            pass  # another process holds the file open; the WAL is folded in by whoever closes last
        self._engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with store.database_errors(self.name), self._engine.connect() as conn, conn.begin():
            yield conn

    # ---- writing -------------------------------------------------------------------------------------------------

    def append(self, kind: str, body: dict) -> Entry:
        """Log one entry in its own transaction; the tree head is re-signed before it commits."""
        return self.append_many([(kind, body)])[0]

    def append_many(self, items: Iterable[tuple[str, dict]]) -> list[Entry]:
        """Log several entries in one transaction: all of them or, on any error or crash, none."""
        items = list(items)
        for kind, body in items:
            check_body(kind, body)  # shape and registration signatures, before taking the lock
        signer = self._signer()
        with store.database_errors(self.name), store.write_transaction(self._engine) as conn:
            frontier = self._checked_frontier(conn).copy()
            entry_rows: list[dict] = []
            node_rows: list[dict] = []
            made = []
            for kind, body in items:
                if kind != "artefact":  # ownership checks read the log, earlier entries of this batch included
                    self._flush(conn, entry_rows, node_rows)
                    self._check_ownership(conn, kind, body)
                timestamp = now_ms()
                leaf = encode_leaf(kind, timestamp, body)
                digest = leaf_hash(leaf)
                index = frontier.size
                node_rows += [{"level": lv, "idx": i, "hash": h} for lv, i, h in frontier.append(digest)]
                entry_rows.append({"idx": index, "kind": kind, "timestamp": timestamp, "sha256": body.get("sha256")
                                   if kind != "transfer" else None, "ref": body.get("registration"),
                                   "leaf": leaf, "leaf_hash": digest})
                made.append(Entry(index, kind, json.loads(leaf)["body"], digest, timestamp, leaf))
            self._flush(conn, entry_rows, node_rows)
            head = json.dumps(self._sign(signer, frontier.size, frontier.root()).to_json())
            conn.execute(update(store.meta).where(store.meta.c.key == "head").values(value=head))
        self._frontier, self._signed_head = frontier, head
        return made

    def _checked_frontier(self, conn: Connection) -> Frontier:
        """The tree's right edge, after checking it against the head the operator signed at the last commit.

        The operator must never sign a tree head over rows someone changed behind its back, so an append into a
        ledger whose stored tree no longer matches its own signed head is refused.
        """
        size = store.current_size(conn)
        frontier = self._frontier_at(conn, size)
        text = conn.execute(select(store.meta.c.value).where(store.meta.c.key == "head")).scalar()
        head = SignedTreeHead.from_json(text or "")
        if (head.tree_size, head.root_hash) != (size, frontier.root()) or \
                (text != self._signed_head and not verify_tree_head(head, self.operator_public_key)):
            raise ProvenanceError(f"ledger {self.name} does not match the tree head its operator signed last (size "
                                  f"{head.tree_size}; the rows hold {size}): it was changed outside genchain; run "
                                  "`genchain ledger audit`, and restore a backup before appending")
        return frontier

    @staticmethod
    def _flush(conn: Connection, entry_rows: list[dict], node_rows: list[dict]) -> None:
        if entry_rows:
            conn.execute(insert(store.entries), entry_rows)
        if node_rows:
            conn.execute(insert(store.nodes), node_rows)
        entry_rows.clear()
        node_rows.clear()

    def _check_ownership(self, conn: Connection, kind: str, body: dict) -> None:
        if kind == "register":
            row = conn.execute(select(store.entries.c.idx, store.entries.c.leaf).where(
                store.entries.c.sha256 == body["sha256"], store.entries.c.kind == "register")).first()
            if row is not None:
                owner = json.loads(row.leaf)["body"]["owner"]
                raise ProvenanceError(f"work {body['sha256'][:12]}... is already registered (entry {row.idx}, owner "
                                      f"{owner['name']!r}); ownership moves with `genchain ledger transfer`")
        elif kind == "transfer":
            owner, last = self._ownership(conn, body["registration"])
            check_transfer(body, owner, last)

    def _signer(self) -> Identity:
        """The operator identity, which must hold the key this ledger's tree heads are signed with."""
        if self._identity is None:
            match = [i["name"] for i in list_identities() if i.get("public_key") == self.operator_public_key]
            if not match:
                raise ProvenanceError(f"ledger {self.name} is operated by key {self.operator_key_id[:16]}..., and "
                                      "no identity here holds it; only its operator can append")
            self._identity = load_identity(match[0])
        if self._identity.public_hex != self.operator_public_key:
            raise ProvenanceError(f"ledger {self.name} is operated by key {self.operator_key_id[:16]}..., not by "
                                  f"identity {self._identity.name!r} ({self._identity.key_id[:16]}...); use the "
                                  "operator's identity (--key NAME)")
        return self._identity

    @staticmethod
    def _sign(identity: Identity, size: int, root: bytes) -> SignedTreeHead:
        timestamp = now_ms()
        return SignedTreeHead(size, root, timestamp, identity.key_id, identity.public_hex,
                              identity.sign(tree_head_bytes(size, timestamp, root)))

    # ---- reading -------------------------------------------------------------------------------------------------

    def size(self) -> int:
        """How many entries the log holds."""
        with self._read() as conn:
            return store.current_size(conn)

    def entry(self, index: int) -> Entry:
        """Entry ``index``; a ProvenanceError if its stored bytes no longer match its leaf hash."""
        with self._read() as conn:
            row = conn.execute(select(store.entries).where(store.entries.c.idx == index)).first()
            if row is None:
                raise InputError(f"the ledger has no entry {index} (it holds {store.current_size(conn)}, "
                                 "numbered from 0)")
        return self._entry(row)

    def entries(self, start: int = 0, stop: int | None = None) -> Iterator[Entry]:
        """Entries ``start <= index < stop`` in order."""
        query = select(store.entries).where(store.entries.c.idx >= start).order_by(store.entries.c.idx)
        if stop is not None:
            query = query.where(store.entries.c.idx < stop)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return (self._entry(row) for row in rows)

    def find(self, sha256_hex: str) -> list[Entry]:
        """The entries whose body's ``sha256`` is ``sha256_hex`` (artefacts and registrations), oldest first."""
        query = select(store.entries).where(store.entries.c.sha256 == sha256_hex.lower()).order_by(store.entries.c.idx)
        with self._read() as conn:
            return [self._entry(row) for row in conn.execute(query)]

    def _entry(self, row) -> Entry:
        leaf = store.blob(row.leaf)
        try:
            kind, timestamp, body = decode_leaf(leaf)
        except ValueError as err:
            raise ProvenanceError(f"ledger entry {row.idx} is damaged ({err}); run `genchain ledger audit`") from None
        if leaf_hash(leaf) != store.blob(row.leaf_hash) or (kind, timestamp) != (row.kind, row.timestamp):
            raise ProvenanceError(f"ledger entry {row.idx} was altered: its bytes no longer match its leaf hash; "
                                  "run `genchain ledger audit`")
        return Entry(int(row.idx), kind, body, leaf_hash(leaf), timestamp, leaf)

    # ---- tree heads and proofs -----------------------------------------------------------------------------------

    def _frontier_at(self, conn: Connection, size: int) -> Frontier:
        if self._frontier is None or self._frontier.size != size:
            keys = perfect_subtrees(0, size)
            found = store.fetch_subtrees(conn, keys)
            self._frontier = Frontier(size, [found[k] for k in keys])
        return self._frontier

    def _range_hashes(self, conn: Connection, ranges: list[tuple[int, int]]) -> list[bytes]:
        parts = [perfect_subtrees(start, end) for start, end in ranges]
        found = store.fetch_subtrees(conn, [key for keys in parts for key in keys])
        return [fold([found[key] for key in keys]) for keys in parts]

    def _checked_size(self, conn: Connection, size: int | None) -> tuple[int, int]:
        current = store.current_size(conn)
        if size is None:
            return current, current
        if not 0 <= size <= current:
            raise InputError(f"tree size {size} is out of range: the ledger holds {current} entries")
        return size, current

    def root_hash(self, size: int | None = None) -> bytes:
        """The Merkle tree hash of the first ``size`` entries (default: all)."""
        with self._read() as conn:
            size, current = self._checked_size(conn, size)
            if size == current:
                return self._frontier_at(conn, current).root()
            return self._range_hashes(conn, [(0, size)])[0]

    def inclusion_proof(self, index: int, tree_size: int | None = None) -> list[bytes]:
        """The audit path of entry ``index`` in the tree of ``tree_size`` entries (default: all)."""
        with self._read() as conn:
            tree_size, _ = self._checked_size(conn, tree_size)
            if not 0 <= index < tree_size:
                raise InputError(f"entry {index} is not in a tree of {tree_size} entries")
            return self._range_hashes(conn, inclusion_ranges(index, tree_size))

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """The proof that the tree of ``old_size`` entries is a prefix of the tree of ``new_size`` (default all)."""
        with self._read() as conn:
            new_size, _ = self._checked_size(conn, new_size)
            if not 0 <= old_size <= new_size:
                raise InputError(f"old size {old_size} must be between 0 and the new size {new_size}")
            return self._range_hashes(conn, consistency_ranges(old_size, new_size))

    def head(self) -> SignedTreeHead:
        """The tree head signed by the last commit (it always covers every entry)."""
        with self._read() as conn:
            text = conn.execute(select(store.meta.c.value).where(store.meta.c.key == "head")).scalar()
        return SignedTreeHead.from_json(text or "")

    def signed_tree_head(self, size: int | None = None) -> SignedTreeHead:
        """A signed tree head for ``size`` entries (default: all), issued and stored for later verifiers.

        The latest head already issued for that size is returned as it is; otherwise the operator signs one.
        """
        with self._read() as conn:
            size, current = self._checked_size(conn, size)
            row = conn.execute(select(store.tree_heads).where(store.tree_heads.c.tree_size == size)
                               .order_by(store.tree_heads.c.timestamp.desc()).limit(1)).first()
        if row is not None:
            return store.stored_head(row, self.operator_key_id, self.operator_public_key)
        head = self.head()
        sth = head if head.tree_size == size else self._sign(self._signer(), size, self.root_hash(size))
        key = (store.tree_heads.c.tree_size == sth.tree_size, store.tree_heads.c.timestamp == sth.timestamp)
        with store.database_errors(self.name), store.write_transaction(self._engine) as conn:
            if conn.execute(select(store.tree_heads.c.tree_size).where(*key)).first() is None:  # not issued yet
                conn.execute(insert(store.tree_heads).values(tree_size=sth.tree_size, timestamp=sth.timestamp,
                                                             root_hash=sth.root_hash, signature=sth.signature))
        return sth

    def tree_heads(self) -> list[SignedTreeHead]:
        """Every tree head issued so far, oldest first."""
        query = select(store.tree_heads).order_by(store.tree_heads.c.timestamp, store.tree_heads.c.tree_size)
        with self._read() as conn:
            return [store.stored_head(r, self.operator_key_id, self.operator_public_key) for r in conn.execute(query)]

    def audit(self, public_key: str | None = None, progress: bool = False):
        """Recompute the whole tree from the stored bytes and check every node and signature: see
        :func:`genchain.provenance.ledger_audit.audit`."""
        from genchain.provenance.ledger_audit import audit

        return audit(self, public_key=public_key, progress=progress)

    # ---- copyright registrations ---------------------------------------------------------------------------------

    def register(self, sha256: str, owner: Identity, license: str, title: str) -> Entry:
        """Register ``owner``'s copyright in the work with SHA-256 ``sha256`` under SPDX licence ``license``."""
        return self.append("register", register_body(sha256, owner, license, title))

    def transfer(self, registration: int, owner: Identity, to: Identity) -> Entry:
        """``owner`` (who must be the current owner) transfers registration ``registration`` to ``to``."""
        with self._read() as conn:
            _, last = self._ownership(conn, registration)
        return self.append("transfer", transfer_body(registration, last, owner, to))

    def history(self, registration: int) -> list[Entry]:
        """The registration entry followed by every transfer of it, oldest first."""
        first = self.entry(registration)
        if first.kind != "register":
            raise InputError(f"entry {registration} is a {first.kind} entry, not a registration")
        query = select(store.entries).where(store.entries.c.ref == registration,
                                            store.entries.c.kind == "transfer").order_by(store.entries.c.idx)
        with self._read() as conn:
            return [first] + [self._entry(row) for row in conn.execute(query)]

    def owner(self, registration: int) -> dict:
        """The current owner of a registration: ``{"name", "key_id", "public_key"}``."""
        with self._read() as conn:
            return self._ownership(conn, registration)[0]

    def _ownership(self, conn: Connection, registration: int) -> tuple[dict, int]:
        """The current owner of ``registration`` and the index of the entry that made them owner."""
        first = conn.execute(select(store.entries).where(store.entries.c.idx == registration)).first()
        if first is None or first.kind != "register":
            raise InputError(f"entry {registration} is not a copyright registration; see `genchain ledger log`")
        owner, last = self._entry(first).body["owner"], registration
        latest = conn.execute(select(store.entries).where(store.entries.c.ref == registration,
                                                          store.entries.c.kind == "transfer")
                              .order_by(store.entries.c.idx.desc()).limit(1)).first()
        if latest is not None:
            owner, last = self._entry(latest).body["to"], int(latest.idx)
        return owner, last


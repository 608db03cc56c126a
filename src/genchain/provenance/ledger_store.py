"""Storage of the transparency log: four tables through SQLAlchemy Core, one code path for SQLite and PostgreSQL.

* ``ledger_entries``: one row per log entry: ``idx``, ``kind``, ``timestamp`` (ms), ``sha256`` (of the work or
  artefact, indexed), ``ref`` (the registration a transfer moves, indexed), ``leaf`` (the exact bytes hashed: the
  entry's canonical JSON) and ``leaf_hash`` (``SHA-256(0x00 || leaf)``).
* ``ledger_nodes``: every perfect subtree hash ``(level, idx)``, written once when the append that completes it
  commits (on average one row per entry), so a root or a proof costs O(log n) indexed reads at any size.
* ``ledger_tree_heads``: every signed tree head the operator issued (a verifier needs old roots).
* ``ledger_meta``: the format version, the operator's public key, and ``head``: the tree head signed by every
  commit, so rows deleted from the end are noticed by ``audit``.

SQLite runs in WAL mode with ``synchronous=FULL``: a commit returns only after the write-ahead log is on disk, so
a crash or power cut keeps every committed append and drops an interrupted one whole. Writers take the write lock
when their transaction begins (SQLite ``BEGIN IMMEDIATE``, PostgreSQL ``LOCK TABLE ... IN EXCLUSIVE MODE``), so
two processes appending at once are serialised and never compute a tree from a stale size.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    and_,
    create_engine,
    func,
    inspect,
    or_,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from genchain.errors import ProvenanceError
from genchain.provenance.keys import genchain_home
from genchain.provenance.merkle import SignedTreeHead
from genchain.sqlite_setup import WRITE_OPTION, configure_sqlite

FORMAT = "genchain-ledger/1"
SQLITE_MAGIC = b"SQLite format 3\x00"
Index = BigInteger().with_variant(Integer, "sqlite")  # INTEGER PRIMARY KEY is SQLite's rowid: the fast path

metadata = MetaData()
meta = Table("ledger_meta", metadata, Column("key", String(64), primary_key=True), Column("value", Text))
entries = Table("ledger_entries", metadata,
                Column("idx", Index, primary_key=True, autoincrement=False),
                Column("kind", String(16), nullable=False),
                Column("timestamp", BigInteger, nullable=False),
                Column("sha256", String(64), index=True),
                Column("ref", BigInteger, index=True),
                Column("leaf", LargeBinary, nullable=False),
                Column("leaf_hash", LargeBinary, nullable=False))
nodes = Table("ledger_nodes", metadata,
              Column("level", SmallInteger, nullable=False),
              Column("idx", BigInteger, nullable=False),
              Column("hash", LargeBinary, nullable=False),
              PrimaryKeyConstraint("level", "idx"), sqlite_with_rowid=False)
tree_heads = Table("ledger_tree_heads", metadata,
                   Column("tree_size", BigInteger, nullable=False),
                   Column("timestamp", BigInteger, nullable=False),
                   Column("root_hash", LargeBinary, nullable=False),
                   Column("signature", LargeBinary, nullable=False),
                   PrimaryKeyConstraint("tree_size", "timestamp"))


def default_location() -> Path:
    return genchain_home() / "ledger.db"


def open_engine(location: str | Path | None) -> tuple[Engine, str]:
    """An engine for a ledger path or URL and the name to show in messages; refuses files that are not ledgers."""
    text = str(location if location is not None else default_location())
    if "://" not in text:
        path = Path(text).expanduser()
        _check_sqlite_file(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        url, name = make_url(f"sqlite:///{path}"), str(path)
    else:
        try:
            url = make_url(text)
        except ArgumentError as err:
            raise ProvenanceError(f"ledger URL {text!r} is not a database URL: {err}") from None
        name = url.render_as_string(hide_password=True)
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")  # psycopg 3; SQLAlchemy's default would be psycopg2
        if url.get_backend_name() == "sqlite" and url.database:
            _check_sqlite_file(Path(url.database))
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(url)
    except (ArgumentError, NoSuchModuleError, ImportError) as err:
        raise ProvenanceError(f"cannot open ledger {name}: {err}; use a path, sqlite:///PATH or "
                              "postgresql://USER@HOST/DB (with psycopg installed)") from None
    if engine.dialect.name == "sqlite":
        configure_sqlite(engine)
    elif engine.dialect.name != "postgresql":
        raise ProvenanceError(f"ledger {name}: {engine.dialect.name} is not supported; use SQLite or PostgreSQL")
    return engine, name


def _check_sqlite_file(path: Path) -> None:
    """An existing file must be a SQLite database: a 0-byte or foreign file is never silently made a new ledger."""
    if not path.exists():
        return
    if path.is_dir():
        raise ProvenanceError(f"ledger {path} is a directory; give the path of a ledger file")
    with open(path, "rb") as fh:
        head = fh.read(len(SQLITE_MAGIC))
    if not head:
        raise ProvenanceError(f"ledger {path} is an empty file (truncated?); restore it from a backup, or delete "
                              "it to start a new ledger")
    if head != SQLITE_MAGIC:
        raise ProvenanceError(f"{path} is not a ledger (not a SQLite database); check the --ledger path")


@contextmanager
def database_errors(name: str) -> Iterator[None]:
    """Turn driver errors (a damaged file, a lost server) into a ProvenanceError naming the ledger."""
    try:
        yield
    except DBAPIError as err:
        reason = str(err.orig).strip().splitlines()[0] if err.orig is not None else str(err)
        hint = ("the file is damaged or truncated: restore it from a backup"
                if "malformed" in reason or "not a database" in reason else "check the --ledger location")
        raise ProvenanceError(f"ledger {name}: {reason}; {hint}") from None


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction holding the ledger's write lock; committed on success, rolled back on any error."""
    with engine.connect() as conn:
        conn = conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql(f"LOCK TABLE {entries.name} IN EXCLUSIVE MODE")
            yield conn


def initialise(engine: Engine, name: str) -> dict[str, str]:
    """The meta rows of the ledger, creating the tables in an empty database; refuses a foreign database."""
    tables = set(inspect(engine).get_table_names())
    ours = {t.name for t in metadata.sorted_tables}
    if tables and meta.name not in tables:
        raise ProvenanceError(f"{name} is a database but not a genchain ledger (it has tables "
                              f"{', '.join(sorted(tables)[:5])}); check the --ledger location")
    if not ours <= tables:
        if tables - {meta.name} & ours:
            missing = ", ".join(sorted(ours - tables))
            raise ProvenanceError(f"ledger {name} is missing tables {missing}: it was damaged; restore a backup")
        metadata.create_all(engine)
    with engine.connect() as conn:
        return {row.key: row.value for row in conn.execute(select(meta.c.key, meta.c.value))}


def blob(value: object) -> bytes:
    """A stored binary value as bytes. SQLite lets any column hold any type, so a tampered row may hold text."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return str(value).encode("utf-8")


def integer(value: object) -> int:
    """A stored integer; -1 (never valid here) when a tampered row holds something else."""
    return value if isinstance(value, int) else -1


def stored_head(row, key_id: str, public_hex: str) -> SignedTreeHead:
    """A ``ledger_tree_heads`` row as the signed statement it claims to be (the key is the ledger's operator)."""
    return SignedTreeHead(integer(row.tree_size), blob(row.root_hash), integer(row.timestamp), key_id, public_hex,
                          blob(row.signature))


def current_size(conn: Connection) -> int:
    """One past the highest entry index: the number of entries when none is missing."""
    top = conn.execute(select(func.max(entries.c.idx))).scalar()
    return 0 if top is None else int(top) + 1


def fetch_subtrees(conn: Connection, keys: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The stored hashes of perfect subtrees ``(level, idx)``; level 0 comes from the entries' leaf hashes."""
    leaves = sorted({idx for level, idx in keys if level == 0})
    inner = sorted({key for key in keys if key[0] > 0})
    found: dict[tuple[int, int], bytes] = {}
    if leaves:
        rows = conn.execute(select(entries.c.idx, entries.c.leaf_hash).where(entries.c.idx.in_(leaves)))
        found.update(((0, int(i)), blob(h)) for i, h in rows)
    if inner:
        by_level: dict[int, list[int]] = {}
        for level, idx in inner:
            by_level.setdefault(level, []).append(idx)
        # One primary-key search per level: SQLite answers a row-value IN ((level, idx), ...) with a full scan.
        rows = conn.execute(select(nodes.c.level, nodes.c.idx, nodes.c.hash).where(
            or_(*(and_(nodes.c.level == level, nodes.c.idx.in_(idxs)) for level, idxs in by_level.items()))))
        found.update(((int(level), int(i)), blob(h)) for level, i, h in rows)
    missing = [key for key in keys if key not in found]
    if missing:
        level, idx = missing[0]
        what = f"entry {idx}" if level == 0 else f"tree node (level {level}, index {idx})"
        raise ProvenanceError(f"the ledger has lost {what}: it was tampered with or damaged; "
                              "run `genchain ledger audit` for the full report")
    return found


def sqlite_integrity(conn: Connection) -> list[str]:
    """SQLite's own page-level check (``PRAGMA quick_check``): empty when the file's structure is sound."""
    if conn.dialect.name != "sqlite":
        return []
    lines = [row[0] for row in conn.exec_driver_sql("PRAGMA quick_check")]
    return [] if lines == ["ok"] else lines


def checkpoint(engine: Engine) -> None:
    """Fold the write-ahead log into the main SQLite file, so the ledger is one self-contained file at rest."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

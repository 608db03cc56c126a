"""Where human pairwise judgements live: SQLAlchemy Core tables, one code path for SQLite and PostgreSQL.

* ``generators``: one row per generator (a run, a model, a sampling setting) by ``name``.
* ``samples``: one row per text shown to raters; ``id`` is the SHA-256 of generator, prompt and text, so importing
  the same file twice adds nothing and two stores name the same sample alike.
* ``comparisons``: one row per judgement: ``sample_a``/``sample_b`` (foreign keys), ``rater``, ``choice``
  (``a``, ``b`` or ``tie``, naming the sample columns, not the screen), ``a_side`` (``left`` or ``right``: where
  ``sample_a`` was shown; left also means "on top" when texts are stacked), ``seconds`` to decide, ``created_at``
  (UTC) and ``source`` (``terminal``, ``web``, ...).
* ``ratings_meta``: ``schema_version``, so a later migration (Alembic, with the web arena) knows what it upgrades.

Every table is in :data:`metadata`, which migrations and the web server import. Each write is its own short
transaction; SQLite runs in WAL mode with ``synchronous=FULL`` and foreign keys on, so a judgement is on disk when
:meth:`RatingStore.add_comparison` returns, whatever happens to the process next.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    func,
    insert,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError

from genchain.errors import InputError
from genchain.eval.samples_file import generator_name, read_sample_records
from genchain.provenance.keys import genchain_home
from genchain.sqlite_setup import WRITE_OPTION, configure_sqlite

SCHEMA_VERSION = 1
SQLITE_MAGIC = b"SQLite format 3\x00"
CHOICES = ("a", "b", "tie")
SIDES = ("left", "right")
RowId = BigInteger().with_variant(Integer, "sqlite")  # INTEGER PRIMARY KEY is SQLite's rowid

metadata = MetaData()
ratings_meta = Table("ratings_meta", metadata,
                     Column("key", String(64), primary_key=True),
                     Column("value", Text, nullable=False))
generators = Table("generators", metadata,
                   Column("name", String(200), primary_key=True),
                   Column("created_at", DateTime(timezone=True), nullable=False))
samples = Table("samples", metadata,
                Column("id", String(64), primary_key=True),
                Column("generator", String(200), ForeignKey("generators.name"), nullable=False, index=True),
                Column("prompt", Text, nullable=False),
                Column("text", Text, nullable=False),
                Column("origin", Text),  # the file it was imported from
                Column("created_at", DateTime(timezone=True), nullable=False))
comparisons = Table("comparisons", metadata,
                    Column("id", RowId, primary_key=True, autoincrement=True),
                    Column("sample_a", String(64), ForeignKey("samples.id"), nullable=False, index=True),
                    Column("sample_b", String(64), ForeignKey("samples.id"), nullable=False, index=True),
                    Column("rater", String(200), nullable=False, index=True),
                    Column("choice", String(3), nullable=False),
                    Column("a_side", String(5), nullable=False),
                    Column("seconds", Float),
                    Column("created_at", DateTime(timezone=True), nullable=False),
                    Column("source", String(32), nullable=False),
                    CheckConstraint("choice IN ('a', 'b', 'tie')", name="ck_comparisons_choice"),
                    CheckConstraint("a_side IN ('left', 'right')", name="ck_comparisons_a_side"),
                    CheckConstraint("sample_a <> sample_b", name="ck_comparisons_distinct"))


@dataclass(frozen=True)
class Sample:
    id: str
    generator: str
    prompt: str
    text: str


@dataclass(frozen=True)
class Comparison:
    """One stored judgement, with the generators of both samples joined in."""

    id: int
    sample_a: str
    sample_b: str
    generator_a: str
    generator_b: str
    rater: str
    choice: str
    a_side: str
    seconds: float | None
    created_at: datetime
    source: str


@dataclass
class ImportResult:
    generator: str
    records: int
    added: int
    duplicates: int = 0  # identical records inside the file
    sample_ids: list[str] = field(default_factory=list)


def sample_id(generator: str, prompt: str, text: str) -> str:
    """The content address of a sample: the same generator, prompt and text always give the same id."""
    return hashlib.sha256("\x00".join((generator, prompt, text)).encode("utf-8")).hexdigest()


def default_location() -> Path:
    return genchain_home() / "ratings.db"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def read_samples_file(path: str | Path) -> tuple[list[dict], str | None]:
    """The records of a samples ``.jsonl`` file and the generator name they carry (``generator``, else ``run``).

    Each line is a JSON object with a string ``text`` (as ``genchain generate text -o x.jsonl`` writes); blank
    lines are skipped. Returns the records and the name, None when the records carry none.
    """
    records = read_sample_records(path)
    if not records:
        raise InputError(f"samples file {path} is empty; it needs one JSON line per sample")
    names = {generator_name(r) or "" for r in records}
    if len(names) > 1:
        shown = ", ".join(sorted(n or "(none)" for n in names)[:4])
        raise InputError(f"{path} mixes samples of several generators ({shown}); put each generator's samples in "
                         "its own file, or name the file's generator with --names")
    return records, names.pop() or None


class RatingStore:
    """Generators, samples and pairwise judgements in one database (see the module docstring for the tables).

    Example::

        with RatingStore.open() as store:                       # $GENCHAIN_HOME/ratings.db
            store.import_file("base.jsonl", "base"); store.import_file("tuned.jsonl", "tuned")
            store.add_comparison(a_id, b_id, rater="ana", choice="a", a_side="right", seconds=4.2)
    """

    def __init__(self, engine: Engine, name: str):
        self._engine = engine
        self.name = name

    @classmethod
    def open(cls, location: str | Path | None = None) -> RatingStore:
        """Open (or create) the store at a path, ``sqlite:///PATH`` or ``postgresql://...`` (default
        ``$GENCHAIN_HOME/ratings.db``)."""
        engine, name = open_engine(location)
        store = cls(engine, name)
        try:
            with store._errors():
                version = store._initialise()
        except BaseException:
            engine.dispose()
            raise
        if version > SCHEMA_VERSION:
            engine.dispose()
            raise InputError(f"ratings store {name} has schema version {version}, newer than this genchain "
                             f"understands ({SCHEMA_VERSION}); upgrade genchain")
        return store

    def close(self) -> None:
        if self._engine.dialect.name == "sqlite":
            try:
                with self._engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            except DBAPIError:
                pass  # another process holds the file; whoever closes last folds the WAL in
        self._engine.dispose()

    def __enter__(self) -> RatingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writing -------------------------------------------------------------------------------------------------

    def import_file(self, path: str | Path, name: str | None = None) -> ImportResult:
        """Add a samples file's records under generator ``name`` (default: the name the records carry, else the
        file's stem). Records already stored are left alone, so importing twice adds nothing."""
        records, carried = read_samples_file(path)
        generator = name or carried or Path(path).stem
        return self.add_samples(generator, [(str(r.get("prompt") or ""), r["text"]) for r in records],
                                origin=str(path))

    def add_samples(self, generator: str, items: list[tuple[str, str]], origin: str | None = None) -> ImportResult:
        """Add ``(prompt, text)`` samples of one generator in one transaction; returns what was new."""
        if not generator.strip():
            raise InputError("a generator name cannot be empty")
        if len(generator) > 200:
            raise InputError(f"generator name {generator[:40]!r}... is longer than 200 characters; pick a shorter one")
        ids: dict[str, tuple[str, str]] = {}
        for prompt, text in items:
            ids.setdefault(sample_id(generator, prompt, text), (prompt, text))
        now = utc_now()
        with self._write() as conn:
            if conn.execute(select(generators.c.name).where(generators.c.name == generator)).first() is None:
                conn.execute(insert(generators).values(name=generator, created_at=now))
            known = set(conn.execute(select(samples.c.id).where(samples.c.generator == generator)).scalars())
            new = [{"id": i, "generator": generator, "prompt": p, "text": t, "origin": origin, "created_at": now}
                   for i, (p, t) in ids.items() if i not in known]
            if new:
                conn.execute(insert(samples), new)
        return ImportResult(generator, len(items), len(new), len(items) - len(ids), list(ids))

    def add_comparison(self, sample_a: str, sample_b: str, rater: str, choice: str, a_side: str,
                       seconds: float | None = None, source: str = "terminal") -> int:
        """Store one judgement in its own transaction and return its id; it is durable when this returns."""
        if choice not in CHOICES:
            raise InputError(f"choice {choice!r} is not one of {', '.join(CHOICES)}")
        if a_side not in SIDES:
            raise InputError(f"a_side {a_side!r} is not one of {', '.join(SIDES)}")
        if sample_a == sample_b:
            raise InputError("a sample cannot be compared with itself")
        if not rater.strip():
            raise InputError("the rater's name cannot be empty; pass --rater NAME")
        row = {"sample_a": sample_a, "sample_b": sample_b, "rater": rater, "choice": choice, "a_side": a_side,
               "seconds": seconds, "created_at": utc_now(), "source": source}
        try:
            with self._write() as conn:
                return int(conn.execute(insert(comparisons).values(**row)).inserted_primary_key[0])
        except IntegrityError:
            raise InputError(f"sample {sample_a[:12]} or {sample_b[:12]} is not in ratings store {self.name}; import "
                             "the samples first") from None

    # ---- reading -------------------------------------------------------------------------------------------------

    def generator_names(self) -> list[str]:
        with self._read() as conn:
            return list(conn.execute(select(generators.c.name).order_by(generators.c.name)).scalars())

    def samples_of(self, generator: str) -> list[Sample]:
        with self._read() as conn:
            rows = conn.execute(select(samples.c.id, samples.c.generator, samples.c.prompt, samples.c.text)
                                .where(samples.c.generator == generator).order_by(samples.c.id))
            return [Sample(*row) for row in rows]

    def comparisons(self, rater: str | None = None) -> list[Comparison]:
        """All judgements (or one rater's), oldest first, each with the generators of its two samples."""
        sa, sb = samples.alias("sa"), samples.alias("sb")
        query = (select(comparisons.c.id, comparisons.c.sample_a, comparisons.c.sample_b, sa.c.generator,
                        sb.c.generator, comparisons.c.rater, comparisons.c.choice, comparisons.c.a_side,
                        comparisons.c.seconds, comparisons.c.created_at, comparisons.c.source)
                 .join(sa, sa.c.id == comparisons.c.sample_a).join(sb, sb.c.id == comparisons.c.sample_b)
                 .order_by(comparisons.c.id))
        if rater is not None:
            query = query.where(comparisons.c.rater == rater)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [Comparison(*row[:9], _as_utc(row[9]), row[10]) for row in rows]

    def count_comparisons(self) -> int:
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(comparisons)).scalar_one())

    # ---- plumbing ------------------------------------------------------------------------------------------------

    def _initialise(self) -> int:
        """Create missing tables (other applications' tables may share the database) and the version row."""
        metadata.create_all(self._engine)
        with self._write() as conn:
            value = conn.execute(select(ratings_meta.c.value).where(ratings_meta.c.key == "schema_version")).scalar()
            if value is None:
                conn.execute(insert(ratings_meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
                return SCHEMA_VERSION
        try:
            return int(value)
        except ValueError:
            raise InputError(f"ratings store {self.name} has a damaged schema_version ({value!r})") from None

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Driver errors (a damaged file, a lost server) become one InputError naming the store."""
        try:
            yield
        except IntegrityError:
            raise
        except DBAPIError as err:
            reason = str(err.orig).strip().splitlines()[0] if err.orig is not None else str(err)
            raise InputError(f"ratings store {self.name}: {reason}; check the --db location") from None

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._errors(), self._engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._errors(), self._engine.connect() as conn:
            conn = conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn


def _as_utc(value: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; every stored time is UTC."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def open_engine(location: str | Path | None) -> tuple[Engine, str]:
    """An engine for a path or database URL and the name to show in messages."""
    text = str(location if location is not None else default_location())
    hint = "use a path, sqlite:///PATH or postgresql://USER@HOST/DB"
    if "://" not in text:
        path = Path(text).expanduser()
        url, name = make_url(f"sqlite:///{path}"), str(path)
        _check_sqlite_file(path)
    else:
        try:
            url = make_url(text)
        except ArgumentError:
            raise InputError(f"--db {text!r} is not a database URL; {hint}") from None
        name = url.render_as_string(hide_password=True)
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise InputError(f"--db {name}: {url.get_backend_name()!r} databases are not supported; {hint}")
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")  # psycopg 3; SQLAlchemy's default is psycopg2
        if url.get_backend_name() == "sqlite" and url.database:
            _check_sqlite_file(Path(url.database))
    if url.get_backend_name() == "sqlite" and url.database:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(url)
    except (ArgumentError, NoSuchModuleError, ImportError) as err:
        raise InputError(f"cannot open ratings store {name}: {err}; {hint} (PostgreSQL needs psycopg)") from None
    if engine.dialect.name == "sqlite":
        configure_sqlite(engine, foreign_keys=True)
    return engine, name


def _check_sqlite_file(path: Path) -> None:
    """An existing file must be a SQLite database: a foreign file is never silently turned into a store."""
    if path.is_dir():
        raise InputError(f"ratings store {path} is a directory; give the path of a database file")
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb") as fh:
        if fh.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise InputError(f"{path} is not a SQLite database; check the --db path")



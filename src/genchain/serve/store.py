"""The server's database: API keys, request log, artefacts, feedback, and the human-evaluation ratings tables.

SQLAlchemy Core, one code path for SQLite (the default, a file in WAL mode with ``synchronous=FULL``) and
PostgreSQL (by URL). The engine comes from :func:`genchain.eval.human_store.open_engine`, so the server and
``genchain eval human`` open a database the same way, and the ratings tables (``generators``, ``samples``,
``comparisons``) are :mod:`genchain.eval.human_store`'s own: the arena writes through its
:class:`~genchain.eval.human_store.RatingStore`. The schema is created and upgraded by Alembic
(``genchain/serve/migrations``) whenever the store opens, so an old database is brought up to date in place.

Every write is one short transaction that has committed when the method returns: a feedback row the client saw
acknowledged survives a ``kill -9`` of the server.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)

from genchain.eval.human_store import RatingStore, RowId, open_engine
from genchain.sqlite_setup import WRITE_OPTION

metadata = MetaData()
api_keys = Table("api_keys", metadata,
                 Column("id", String(16), primary_key=True),  # public: shown in lists and logs
                 Column("name", String(200), nullable=False),
                 Column("key_sha256", String(64), nullable=False, unique=True),  # the key itself is never stored
                 Column("rate", String(32), nullable=False),
                 Column("created_at", DateTime(timezone=True), nullable=False),
                 Column("revoked_at", DateTime(timezone=True)))
requests = Table("requests", metadata,
                 Column("id", RowId, primary_key=True, autoincrement=True),
                 Column("key_id", String(32), index=True),
                 Column("route", String(100), nullable=False),
                 Column("model", String(200)),
                 Column("status", Integer, nullable=False),
                 Column("latency_ms", Float, nullable=False),
                 Column("prompt_tokens", Integer),
                 Column("completion_tokens", Integer),
                 Column("created_at", DateTime(timezone=True), nullable=False))
artefacts = Table("artefacts", metadata,
                  Column("id", String(32), primary_key=True),
                  Column("kind", String(16), nullable=False),
                  Column("model", String(200), nullable=False),
                  Column("path", Text, nullable=False),  # relative to the artefacts directory
                  Column("sha256", String(64), nullable=False),
                  Column("manifest", Text),  # the signed manifest JSON, once signing has run
                  Column("created_at", DateTime(timezone=True), nullable=False))
feedback = Table("feedback", metadata,
                 Column("id", RowId, primary_key=True, autoincrement=True),
                 Column("artefact_id", String(32), ForeignKey("artefacts.id"), nullable=False, index=True),
                 Column("thumbs", String(4)),
                 Column("rating", Integer),
                 Column("comment", Text),
                 Column("key_id", String(32)),
                 Column("created_at", DateTime(timezone=True), nullable=False))

MIGRATIONS = Path(__file__).with_name("migrations")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def upgrade(engine: Engine) -> None:
    """``alembic upgrade head`` on ``engine``: creates a new database, upgrades an old one, leaves a current one."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


class Store:
    """The server's tables in one database (path, ``sqlite:///PATH`` or ``postgresql://...``)."""

    def __init__(self, location: str | Path | None):
        self.engine, self.name = open_engine(location)
        try:
            upgrade(self.engine)
        except BaseException:
            self.engine.dispose()
            raise
        self.ratings = RatingStore(self.engine, self.name)

    def close(self) -> None:
        self.ratings.close()

    def _write(self):
        conn = self.engine.connect().execution_options(**{WRITE_OPTION: True})  # BEGIN IMMEDIATE on SQLite
        return conn

    def _run(self, statement: Any) -> Any:
        with self._write() as conn, conn.begin():
            return conn.execute(statement)

    # ------------------------------------------------------------------------------------------------ api keys
    def add_key(self, key_id: str, name: str, key_sha256: str, rate: str) -> None:
        self._run(insert(api_keys).values(id=key_id, name=name, key_sha256=key_sha256, rate=rate,
                                          created_at=utc_now()))

    def key_by_hash(self, key_sha256: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_sha256 == key_sha256)).mappings().first()
        return dict(row) if row else None

    def list_keys(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(api_keys).order_by(api_keys.c.created_at)).mappings()]

    def revoke_key(self, key_id: str) -> bool:
        result = self._run(update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                           .values(revoked_at=utc_now()))
        return result.rowcount > 0

    # ------------------------------------------------------------------------------------------------ requests
    def log_requests(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            with self._write() as conn, conn.begin():
                conn.execute(insert(requests), rows)

    def count_requests(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(requests)).scalar_one())

    # ------------------------------------------------------------------------------------------------ artefacts
    def add_artefacts(self, rows: list[dict[str, Any]]) -> None:
        now = utc_now()
        with self._write() as conn, conn.begin():
            conn.execute(insert(artefacts), [{"manifest": None, "created_at": now, **row} for row in rows])

    def set_manifest(self, artefact_id: str, manifest: dict[str, Any]) -> None:
        """Store the signed manifest and the hash of the file as signed: embedding C2PA changes the bytes, so the
        hash taken when the artefact was first written no longer names the file that is served."""
        self._run(update(artefacts).where(artefacts.c.id == artefact_id)
                  .values(manifest=json.dumps(manifest, ensure_ascii=False), sha256=manifest["artefact"]["sha256"]))

    def artefact(self, artefact_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(artefacts).where(artefacts.c.id == artefact_id)).mappings().first()
        if row is None:
            return None
        record = dict(row)
        record["manifest"] = json.loads(record["manifest"]) if record["manifest"] else None
        return record

    # ------------------------------------------------------------------------------------------------ feedback
    def add_feedback(self, artefact_id: str, thumbs: str | None, rating: int | None, comment: str | None,
                     key_id: str | None) -> int | None:
        """The new row's id, or None when the artefact is unknown; committed when this returns."""
        with self._write() as conn, conn.begin():
            if conn.execute(select(artefacts.c.id).where(artefacts.c.id == artefact_id)).first() is None:
                return None
            result = conn.execute(insert(feedback).values(artefact_id=artefact_id, thumbs=thumbs, rating=rating,
                                                          comment=comment, key_id=key_id, created_at=utc_now()))
            return int(result.inserted_primary_key[0])

    def feedback_rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(feedback).order_by(feedback.c.id)).mappings()]

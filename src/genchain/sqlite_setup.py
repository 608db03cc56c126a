"""How every genchain SQLite database is opened: durable, concurrent, and with writers queued, not failing.

The ledger and the ratings/serving store share this: WAL (readers never block the writer), ``synchronous=FULL``
(a committed row survives a power cut), a 30 s busy timeout, and transactions that genchain begins itself, so a
connection marked as a writer takes the write lock at ``BEGIN IMMEDIATE`` -- two writers then queue instead of
one failing with "database is locked" halfway through its transaction.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import Connection, Engine, event

WRITE_OPTION = "sqlite_write"  # connection.execution_options(sqlite_write=True) marks a writer


def configure_sqlite(engine: Engine, foreign_keys: bool = False) -> None:
    """Install the pragmas and the BEGIN rule on every connection ``engine`` opens."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below), for reads too
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        if foreign_keys:
            cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

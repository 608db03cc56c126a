"""The server's first schema: api_keys, requests, artefacts, feedback; and the ratings tables if missing.

The ratings tables belong to :mod:`genchain.eval.human_store`, which may have created them already (a ratings
store used from the terminal before the server existed): they are created from its metadata only where absent.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from genchain.eval import human_store

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    bind = op.get_bind()
    human_store.metadata.create_all(bind, checkfirst=True)
    meta = human_store.ratings_meta
    if bind.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).first() is None:
        bind.execute(sa.insert(meta).values(key="schema_version", value=str(human_store.SCHEMA_VERSION)))
    op.create_table("api_keys",
                    sa.Column("id", sa.String(16), primary_key=True),
                    sa.Column("name", sa.String(200), nullable=False),
                    sa.Column("key_sha256", sa.String(64), nullable=False, unique=True),
                    sa.Column("rate", sa.String(32), nullable=False),
                    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
                    sa.Column("revoked_at", sa.DateTime(timezone=True)))
    op.create_table("requests",
                    sa.Column("id", RowId, primary_key=True, autoincrement=True),
                    sa.Column("key_id", sa.String(32), index=True),
                    sa.Column("route", sa.String(100), nullable=False),
                    sa.Column("model", sa.String(200)),
                    sa.Column("status", sa.Integer, nullable=False),
                    sa.Column("latency_ms", sa.Float, nullable=False),
                    sa.Column("prompt_tokens", sa.Integer),
                    sa.Column("completion_tokens", sa.Integer),
                    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False))
    op.create_table("artefacts",
                    sa.Column("id", sa.String(32), primary_key=True),
                    sa.Column("kind", sa.String(16), nullable=False),
                    sa.Column("model", sa.String(200), nullable=False),
                    sa.Column("path", sa.Text, nullable=False),
                    sa.Column("sha256", sa.String(64), nullable=False),
                    sa.Column("manifest", sa.Text),
                    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False))
    op.create_table("feedback",
                    sa.Column("id", RowId, primary_key=True, autoincrement=True),
                    sa.Column("artefact_id", sa.String(32), sa.ForeignKey("artefacts.id"), nullable=False,
                              index=True),
                    sa.Column("thumbs", sa.String(4)),
                    sa.Column("rating", sa.Integer),
                    sa.Column("comment", sa.Text),
                    sa.Column("key_id", sa.String(32)),
                    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False))


def downgrade() -> None:
    for table in ("feedback", "artefacts", "requests", "api_keys"):
        op.drop_table(table)

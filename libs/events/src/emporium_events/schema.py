"""Migration steps for the messaging tables, frozen per version so old migrations stay true.

A service's first Alembic revision calls ``create_messaging_tables_v1(op)``; a later change of
these tables is a new function called from a new revision.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB


def create_messaging_tables_v1(op: Any) -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", sa.Uuid, nullable=False, unique=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("envelope", JSONB, nullable=False),
        sa.Column("trace_headers", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
    )
    op.create_index("outbox_unsent", "outbox", ["id"], postgresql_where=sa.text("sent_at IS NULL"))
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Uuid, primary_key=True),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def drop_messaging_tables_v1(op: Any) -> None:
    op.drop_table("inbox")
    op.drop_index("outbox_unsent", table_name="outbox")
    op.drop_table("outbox")


def create_dead_letters_table_v1(op: Any) -> None:
    """Dead letters, kept where an operator can list and replay them (they also go to Kafka)."""
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("consumer", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("key", sa.LargeBinary),
        sa.Column("value", sa.LargeBinary),
        sa.Column("headers", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("error_type", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("replayed_at", sa.DateTime(timezone=True)),
    )


def drop_dead_letters_table_v1(op: Any) -> None:
    op.drop_table("dead_letters")


# The retention purge's indexes (emporium_events.retention), as in tables.py.
_RETENTION_INDEXES_V1 = (
    ("outbox_sent_at", "outbox", "sent_at", "sent_at IS NOT NULL"),
    ("inbox_processed_at", "inbox", "processed_at", None),
    ("dead_letters_replayed_at", "dead_letters", "replayed_at", "replayed_at IS NOT NULL"),
)


def create_retention_indexes_v1(op: Any) -> None:
    """Built ``CONCURRENTLY``, outside the migration's transaction: a plain ``CREATE INDEX`` holds
    a SHARE lock, which stops every insert into the inbox (the consumers) and every update of the
    outbox (the relay) for as long as the build of a table of many days takes. Each is dropped
    first if it exists: an interrupted concurrent build leaves an invalid index behind."""
    with op.get_context().autocommit_block():
        for name, table, column, where in _RETENTION_INDEXES_V1:
            op.drop_index(name, table_name=table, if_exists=True, postgresql_concurrently=True)
            op.create_index(
                name,
                table,
                [column],
                postgresql_where=sa.text(where) if where else None,
                postgresql_concurrently=True,
            )


def drop_retention_indexes_v1(op: Any) -> None:
    with op.get_context().autocommit_block():
        for name, table, _, _ in reversed(_RETENTION_INDEXES_V1):
            op.drop_index(name, table_name=table, if_exists=True, postgresql_concurrently=True)

"""The messaging tables every service's database has: outbox, inbox and dead letters.

Each service's first migration creates them from ``messaging_metadata``; the modules that use
them (``outbox``, ``inbox``, ``relay``, the consumer's dead-lettering) import them from here.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

messaging_metadata = sa.MetaData()

outbox = sa.Table(
    "outbox",
    messaging_metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("event_id", sa.Uuid, nullable=False, unique=True),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("envelope", JSONB, nullable=False),
    sa.Column("trace_headers", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.Index("outbox_unsent", "id", postgresql_where=sa.text("sent_at IS NULL")),
    # The retention purge's (emporium_events.retention). Partial: a row gets its entry when the
    # relay marks it sent (an update that is never HOT anyway), so an insert pays nothing.
    sa.Index("outbox_sent_at", "sent_at", postgresql_where=sa.text("sent_at IS NOT NULL")),
)

inbox = sa.Table(
    "inbox",
    messaging_metadata,
    sa.Column("consumer", sa.Text, primary_key=True),
    sa.Column("event_id", sa.Uuid, primary_key=True),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    # The retention purge's; a right-edge insert per claimed event (~95 B of WAL a row, measured).
    sa.Index("inbox_processed_at", "processed_at"),
)

dead_letters = sa.Table(
    "dead_letters",
    messaging_metadata,
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
    # The retention purge's: only replayed letters are ever purged, and only they are indexed.
    sa.Index("dead_letters_replayed_at", "replayed_at", postgresql_where=sa.text("replayed_at IS NOT NULL")),
)

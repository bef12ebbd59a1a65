"""notifications, outbox and inbox

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

from emporium_events.schema import create_messaging_tables_v1, drop_messaging_tables_v1

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("customer_id", sa.Uuid, nullable=False, index=True),
        sa.Column("order_id", sa.Uuid, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("email_to", sa.Text),
        sa.Column("email_status", sa.Text, nullable=False),
        sa.Column("email_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("email_error", sa.Text),
        sa.Column(
            "next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("order_id", "type", name="one_notification_per_order_and_type"),
    )
    op.create_index(
        "notifications_email_pending",
        "notifications",
        ["next_attempt_at"],
        postgresql_where=sa.text("email_status = 'PENDING'"),
    )
    create_messaging_tables_v1(op)


def downgrade() -> None:
    drop_messaging_tables_v1(op)
    op.drop_table("notifications")

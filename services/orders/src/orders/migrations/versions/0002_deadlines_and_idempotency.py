"""saga deadlines and idempotency keys

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("deadline_at", sa.DateTime(timezone=True)))
    op.execute("UPDATE orders SET deadline_at = created_at + interval '30 seconds'")
    op.alter_column("orders", "deadline_at", nullable=False)
    op.create_index(
        "orders_open_by_deadline",
        "orders",
        ["deadline_at"],
        postgresql_where=sa.text("status NOT IN ('CONFIRMED', 'CANCELLED')"),
    )
    op.add_column("orders", sa.Column("idempotency_key", sa.Text))
    op.create_table(
        "idempotency_keys",
        sa.Column("customer_id", sa.Uuid, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("request_hash", sa.Text, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("response", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("idempotency_keys_created_at", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_column("orders", "idempotency_key")
    op.drop_index("orders_open_by_deadline", table_name="orders")
    op.drop_column("orders", "deadline_at")

"""payments, sandbox provider ledger, outbox and inbox

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
        "payments",
        sa.Column("order_id", sa.Uuid, primary_key=True),
        sa.Column("payment_id", sa.Uuid, nullable=False, unique=True),
        sa.Column("customer_id", sa.Uuid),
        sa.Column("amount_cents", sa.BigInteger),
        sa.Column("currency", sa.String(3)),
        sa.Column("payment_token", sa.Text),
        sa.Column("stock_reserved", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("provider_charge_id", sa.Text),
        sa.Column("provider_refund_id", sa.Text),
        sa.Column("failure_reason", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    # The sandbox provider's own ledger: stands in for the card processor's records, written in
    # its own transactions, keyed by the idempotency key like a real provider's API.
    op.create_table(
        "sandbox_provider_operations",
        sa.Column("idempotency_key", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("operation_id", sa.Text, nullable=False),
        sa.Column("approved", sa.Boolean, nullable=False),
        sa.Column("decline_code", sa.Text),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    create_messaging_tables_v1(op)


def downgrade() -> None:
    drop_messaging_tables_v1(op)
    op.drop_table("sandbox_provider_operations")
    op.drop_table("payments")

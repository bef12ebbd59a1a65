"""orders remember the trace of the request that placed them (GET /orders/{id} returns it)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("trace_id", sa.Text))


def downgrade() -> None:
    op.drop_column("orders", "trace_id")

"""a notification keeps the trace context of the event that asked for it

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notifications", sa.Column("trace_headers", JSONB))


def downgrade() -> None:
    op.drop_column("notifications", "trace_headers")

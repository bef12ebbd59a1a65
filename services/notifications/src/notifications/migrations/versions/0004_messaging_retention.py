"""indexes for the messaging tables' retention purge (sent outbox rows, inbox rows, replayed
dead letters), built concurrently

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08
"""

from alembic import op

from emporium_events.schema import create_retention_indexes_v1, drop_retention_indexes_v1

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_retention_indexes_v1(op)


def downgrade() -> None:
    drop_retention_indexes_v1(op)

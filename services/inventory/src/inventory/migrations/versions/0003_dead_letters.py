"""dead letters an operator can list and replay

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from alembic import op

from emporium_events.schema import create_dead_letters_table_v1, drop_dead_letters_table_v1

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_dead_letters_table_v1(op)


def downgrade() -> None:
    drop_dead_letters_table_v1(op)

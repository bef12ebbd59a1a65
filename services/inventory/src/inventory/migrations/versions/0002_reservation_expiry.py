"""reservations expire

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("reservations", sa.Column("expires_at", sa.DateTime(timezone=True)))
    op.create_index(
        "reservations_held_by_expiry",
        "reservations",
        ["expires_at"],
        postgresql_where=sa.text("status = 'RESERVED'"),
    )


def downgrade() -> None:
    op.drop_index("reservations_held_by_expiry", table_name="reservations")
    op.drop_column("reservations", "expires_at")

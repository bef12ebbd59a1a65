"""the client's idempotency key and the provider key used

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
    op.add_column("payments", sa.Column("client_key", sa.Text))
    op.add_column("payments", sa.Column("provider_key", sa.Text))


def downgrade() -> None:
    op.drop_column("payments", "provider_key")
    op.drop_column("payments", "client_key")

"""a mail claimed by a sender carries the claim's token

The sender claims due mail by moving its next attempt past a lease and writing a token; it
settles only the mails that still carry its token (adapters/repository.py, MailQueue).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notifications", sa.Column("claim_token", sa.Uuid))


def downgrade() -> None:
    op.drop_column("notifications", "claim_token")

"""a mail claimed by a sender carries the claim's token

The sender claims due mail by moving its next attempt past a lease and writing a token; it
settles only the mails that still carry its token (adapters/repository.py, MailQueue).

Revision ID: 0004
Revises: 0003
Create Date: 2027-01-12
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notifications", sa.Column("claim_token", sa.Uuid))


def downgrade() -> None:
    op.drop_column("notifications", "claim_token")

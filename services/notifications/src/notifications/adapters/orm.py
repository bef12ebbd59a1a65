import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData()

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("customer_id", sa.Uuid, nullable=False),
    sa.Column("order_id", sa.Uuid, nullable=False),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("email_to", sa.Text),
    sa.Column("email_status", sa.Text, nullable=False),
    sa.Column("email_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("email_error", sa.Text),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    # The W3C trace context of the event that asked for the mail: its sending joins that trace.
    sa.Column("trace_headers", JSONB),
    # Set while a sender holds the mail (its claim's lease is next_attempt_at): only the holder of
    # the token settles it.
    sa.Column("claim_token", sa.Uuid),
)

import sqlalchemy as sa

metadata = sa.MetaData()

payments = sa.Table(
    "payments",
    metadata,
    sa.Column("order_id", sa.Uuid, primary_key=True),
    sa.Column("payment_id", sa.Uuid, nullable=False, unique=True),
    sa.Column("customer_id", sa.Uuid),
    sa.Column("amount_cents", sa.BigInteger),
    sa.Column("currency", sa.String(3)),
    sa.Column("payment_token", sa.Text),
    sa.Column("stock_reserved", sa.Boolean, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("provider_charge_id", sa.Text),
    sa.Column("provider_refund_id", sa.Text),
    sa.Column("failure_reason", sa.Text),
    sa.Column("client_key", sa.Text),
    sa.Column("provider_key", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

sandbox_provider_operations = sa.Table(
    "sandbox_provider_operations",
    metadata,
    sa.Column("idempotency_key", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("operation_id", sa.Text, nullable=False),
    sa.Column("approved", sa.Boolean, nullable=False),
    sa.Column("decline_code", sa.Text),
    sa.Column("amount_cents", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

"""Gateway settings, read from ``GATEWAY_*`` environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from emporium_kit.replicas import parse_urls
from emporium_kit.settings import ProcessSettings, env_prefix

# A development-only signing key. Every real deployment MUST set GATEWAY_JWT_SECRET to a random
# value of at least 32 bytes (e.g. `python -c "import secrets; print(secrets.token_urlsafe(48))"`).
DEV_JWT_SECRET = "emporium-dev-only-jwt-secret-change-me-in-every-deployment"


class GatewaySettings(ProcessSettings):
    model_config = env_prefix("gateway")

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/gateway"
    port: int = 8000
    db_pool_size: int = 5

    jwt_secret: str = Field(
        DEV_JWT_SECRET, description="HS256 signing key; MUST be changed outside development."
    )
    jwt_ttl_seconds: int = Field(3600, gt=0)
    jwt_issuer: str = "emporium-gateway"

    # Each: one base URL (in Kubernetes, the service's Service, which spreads calls over its pods)
    # or several comma-separated, one per replica, taken in turn (adapters/upstream.py).
    catalog_url: str = "http://127.0.0.1:8001"
    inventory_url: str = "http://127.0.0.1:8002"
    orders_url: str = "http://127.0.0.1:8003"
    payments_url: str = "http://127.0.0.1:8004"
    notifications_url: str = "http://127.0.0.1:8005"
    # aiohttp's client costs the gateway a fraction of httpx's CPU per call (adapters/upstream.py);
    # httpx's stays as the fallback.
    upstream_client: Literal["aiohttp", "httpx"] = "aiohttp"
    upstream_timeout_seconds: float = Field(5.0, gt=0)
    upstream_max_connections: int = Field(200, gt=0)
    ready_timeout_seconds: float = Field(1.0, gt=0)

    admin_email: str = "admin@emporium.local"
    admin_password: str = "admin-password-change-me"
    admin_name: str = "Emporium Admin"

    @field_validator("catalog_url", "inventory_url", "orders_url", "payments_url", "notifications_url")
    @classmethod
    def _base_urls(cls, value: str) -> str:
        return ",".join(parse_urls(value))  # an empty entry fails at start-up, not per request

    def upstream_urls(self) -> dict[str, str]:
        return {
            "catalog": self.catalog_url,
            "inventory": self.inventory_url,
            "orders": self.orders_url,
            "payments": self.payments_url,
            "notifications": self.notifications_url,
        }

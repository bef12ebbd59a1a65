from emporium_kit.settings import ServiceSettings, env_prefix


class OrdersSettings(ServiceSettings):
    model_config = env_prefix("orders")
    port: int = 8003
    catalog_url: str = "http://127.0.0.1:8001"  # or the catalog's replicas, comma-separated
    catalog_timeout_seconds: float = 2.0  # below the gateway's 5 s upstream timeout
    saga_timeout_seconds: float = 30.0
    deadline_sweep_seconds: float = 1.0
    idempotency_retention_hours: float = 48.0

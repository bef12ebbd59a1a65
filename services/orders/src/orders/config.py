from emporium_kit.settings import ServiceSettings, env_prefix


class OrdersSettings(ServiceSettings):
    model_config = env_prefix("orders")
    port: int = 8003
    catalog_url: str = "http://127.0.0.1:8001"
    catalog_timeout_seconds: float = 3.0

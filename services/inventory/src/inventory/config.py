from emporium_kit.settings import ServiceSettings, env_prefix


class InventorySettings(ServiceSettings):
    model_config = env_prefix("inventory")
    port: int = 8002
    # Longer than the orders saga deadline (30 s), so only dead sagas' stock is released.
    reservation_ttl_seconds: float = 60.0
    expiry_sweep_seconds: float = 1.0

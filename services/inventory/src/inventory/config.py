from emporium_kit.settings import ServiceSettings, env_prefix


class InventorySettings(ServiceSettings):
    model_config = env_prefix("inventory")
    port: int = 8002

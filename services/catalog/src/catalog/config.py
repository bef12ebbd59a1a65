from emporium_kit.settings import ServiceSettings, env_prefix


class CatalogSettings(ServiceSettings):
    model_config = env_prefix("catalog")
    port: int = 8001

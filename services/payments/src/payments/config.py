from emporium_kit.settings import ServiceSettings, env_prefix


class PaymentsSettings(ServiceSettings):
    model_config = env_prefix("payments")
    port: int = 8004
    provider: str = "sandbox"

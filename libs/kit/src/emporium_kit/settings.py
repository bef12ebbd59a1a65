"""Settings read from the environment (pydantic-settings); each service uses its own prefix."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class ProcessSettings(BaseSettings):
    """What every HTTP process reads (the gateway too). Subclass with
    ``model_config = env_prefix("orders")`` and a default port."""

    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    host: str = "127.0.0.1"
    port: int = 8080
    db_pool_size: int = 20
    log_level: str = "INFO"


class ServiceSettings(ProcessSettings):
    """A service: a process on Kafka with an outbox relay."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    relay_sweep_seconds: float = 1.0


def env_prefix(service: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=f"{service.upper()}_", extra="ignore")

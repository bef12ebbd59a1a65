"""Settings read from the environment (pydantic-settings); each service uses its own prefix."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ProcessSettings(BaseSettings):
    """What every HTTP process reads (the gateway too). Subclass with
    ``model_config = env_prefix("orders")`` and a default port."""

    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    host: str = "127.0.0.1"
    port: int = 8080
    # Steady connections per process (emporium_kit.db.make_engine); the relay's lease has its own.
    db_pool_size: int = 6
    log_level: str = "INFO"


class ServiceSettings(ProcessSettings):
    """A service: a process on Kafka with an outbox relay."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    relay_sweep_seconds: float = 1.0
    # Retention of the messaging tables (emporium_events.retention, README "Retention").
    # Sent outbox rows: nothing reads them again, and the orders outbox holds payment tokens.
    outbox_retention_hours: float = Field(default=1.0, gt=0)
    # Inbox rows (and replayed dead letters). The rule: at least the longest a record stays
    # readable on any topic the service consumes, retention.ms + segment.ms (Kafka deletes whole
    # segments): 7 + 7 days with the broker's defaults, which every topic here has; 15 days is a
    # day's margin. Shorter, and a group that rereads its topics (its offsets expired or reset)
    # handles again every event whose inbox row is gone. Lengthen it with the topics' retention.
    inbox_retention_hours: float = Field(default=15 * 24.0, gt=0)
    retention_sweep_seconds: float = Field(default=60.0, ge=0)  # 0: never purge
    retention_batch_size: int = Field(default=1000, ge=1)  # rows per delete, each its own transaction
    # The consumers' fetches (README "Tuning"): the broker answers a fetch once it has
    # ``fetch_min_bytes`` for us or ``fetch_max_wait_ms`` passed; a poll hands over at most
    # ``max_records`` records, which the bus handles as one batch (one transaction).
    consumer_fetch_min_bytes: int = Field(default=1, ge=1, le=1_048_576)
    consumer_fetch_max_wait_ms: int = Field(default=500, ge=0, le=10_000)
    consumer_max_records: int = Field(default=200, ge=1, le=10_000)
    # How often a consumer commits its offsets while it has handled records (and at once when it
    # idles or stops). Each commit is a broker request and a write to __consumer_offsets; a crash
    # replays at most this much, which the inbox turns into no-ops. 1 s rather than 0.25 s: Kafka's
    # CPU per order fell from 9.0 to 7.7 ms at 20 orders/s and from 4.2 to 2.5 ms at 40/s.
    consumer_commit_interval_seconds: float = Field(default=1.0, gt=0, le=60)


def env_prefix(service: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=f"{service.upper()}_", extra="ignore")

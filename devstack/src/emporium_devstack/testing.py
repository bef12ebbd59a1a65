"""Pytest fixtures for the real Kafka broker and PostgreSQL server.

Where a Docker engine answers, the fixtures use testcontainers (``KafkaContainer``,
``PostgresContainer``); otherwise they start the project's own local processes (the same
``KafkaBroker`` and ``PostgresCluster`` that ``make run`` uses). Tests see only a bootstrap string
and a way to make databases, so they never depend on which one runs.

Enable with ``pytest_plugins = ["emporium_devstack.testing"]`` in a conftest.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from emporium_devstack.kafka import KafkaBroker, ensure_kafka_libs
from emporium_devstack.postgres import PostgresCluster


def repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def cache_dir() -> Path:
    return Path(os.environ.get("EMPORIUM_CACHE", repo_root() / ".cache"))


def docker_available() -> bool:
    if os.environ.get("EMPORIUM_NO_DOCKER") == "1":
        return False
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=2).ping()
        return True
    except Exception:  # any failure to reach an engine means: no Docker here
        return False


@dataclass
class Databases:
    """Makes a fresh database (and its owner role) per call; returns its SQLAlchemy URL."""

    create: Callable[[str], str]


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    libs = ensure_kafka_libs(cache_dir())
    broker = KafkaBroker(libs_dir=libs, data_dir=tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    if docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:15", driver="psycopg") as container:
            admin_url = container.get_connection_url()

            def create_in_container(name: str) -> str:
                import sqlalchemy as sa

                engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
                db = f"{name}_{uuid.uuid4().hex[:8]}"
                with engine.connect() as conn:
                    conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
                engine.dispose()
                return admin_url.rsplit("/", 1)[0] + f"/{db}"

            yield Databases(create=create_in_container)
        return
    cluster = PostgresCluster(data_dir=tmp_path_factory.mktemp("pg") / "data")
    cluster.init()
    cluster.start(fast=True)

    def create_local(name: str) -> str:
        db = f"{name}_{uuid.uuid4().hex[:8]}"
        cluster.ensure_database(db, db, "test-password")
        return cluster.url(db, db, "test-password")

    try:
        yield Databases(create=create_local)
    finally:
        cluster.stop()

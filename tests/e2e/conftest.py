"""The whole system, started once per test session as local processes (or against a running
stack given ``EMPORIUM_E2E_GATEWAY``, with its database URLs in ``EMPORIUM_E2E_DB_<NAME>``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from uuid import uuid4

import httpx
import pytest
import sqlalchemy as sa

from emporium_devstack.jaeger import jaeger_built
from emporium_devstack.stack import SERVICES, Stack
from emporium_devstack.testing import cache_dir, repo_root

TERMINAL = {"CONFIRMED", "CANCELLED"}
SAGA_TIMEOUT_SECONDS = 8


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, databases) -> Iterator[Stack]:
    """The services and the gateway on the session's broker and database server (testcontainers
    where Docker answers, the project's own processes otherwise), each with a fresh database,
    exporting their spans to a real Jaeger wherever the bootstrap could build one."""
    work = tmp_path_factory.mktemp("stack")
    with Stack(
        root=repo_root(),
        cache_dir=cache_dir(),
        work_dir=work,
        free_ports=True,
        echo=False,
        log_level="WARNING",
        kafka_bootstrap=kafka_bootstrap,
        # Spans leave each process within 0.2 s instead of the SDK's 5 s, so a test sees them soon.
        env={"ORDERS_SAGA_TIMEOUT_SECONDS": str(SAGA_TIMEOUT_SECONDS), "OTEL_BSP_SCHEDULE_DELAY": "200"},
        database_urls={name: databases.create(name) for name in (*SERVICES, "gateway")},
        observe=jaeger_built(cache_dir()),
        monitor=True,  # Prometheus and Alertmanager: Debian packages the bootstrap always installs
    ) as running:
        yield running


@pytest.fixture(scope="session")
def db(stack: Stack):
    engines = {name: sa.create_engine(stack.database_url(name)) for name in stack.names}

    def query(name: str, sql: str, **params):
        with engines[name].begin() as conn:
            result = conn.execute(sa.text(sql), params)
            return result.all() if result.returns_rows else result.rowcount

    yield query
    for engine in engines.values():
        engine.dispose()


@dataclass
class Api:
    client: httpx.AsyncClient
    admin_token: str

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def customer(self) -> tuple[str, str]:
        """Registers a new customer; returns (id, token)."""
        email = f"c-{uuid4().hex[:10]}@example.com"
        r = await self.client.post(
            "/api/v1/auth/register", json={"email": email, "password": "correct horse", "name": "Cust"}
        )
        assert r.status_code == 201, r.text
        return r.json()["id"], await self.login(email, "correct horse")

    async def login(self, email: str, password: str) -> str:
        r = await self.client.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    async def product(self, *, stock: int, price_cents: int = 1999) -> str:
        r = await self.client.post(
            "/api/v1/products",
            headers=self.auth(self.admin_token),
            json={
                "sku": f"SKU-{uuid4().hex[:10]}",
                "name": "Test lamp",
                "description": "e2e",
                "price_cents": price_cents,
                "currency": "USD",
                "category": "test",
            },
        )
        assert r.status_code == 201, r.text
        product_id = r.json()["id"]
        r = await self.client.put(
            f"/api/v1/inventory/{product_id}", headers=self.auth(self.admin_token), json={"on_hand": stock}
        )
        assert r.status_code == 200, r.text
        return product_id

    async def place(
        self,
        token: str,
        product_id: str,
        quantity: int,
        payment_token: str = "tok_visa",
        key: str | None = None,
    ) -> dict:
        headers = self.auth(token) | ({"Idempotency-Key": key} if key else {})
        r = await self.client.post(
            "/api/v1/orders",
            headers=headers,
            json={
                "items": [{"product_id": product_id, "quantity": quantity}],
                "payment_token": payment_token,
            },
        )
        assert r.status_code == 202, r.text
        return r.json()

    async def order(self, token: str, order_id: str) -> httpx.Response:
        return await self.client.get(f"/api/v1/orders/{order_id}", headers=self.auth(token))

    async def history(self, token: str, order_id: str, *steps: str, timeout: float = 15.0) -> list[str]:
        """The order's history once it holds every one of ``steps`` (compensations are asynchronous)."""
        deadline = time.monotonic() + timeout
        while True:
            seen = [h["status"] for h in (await self.order(token, order_id)).json()["history"]]
            if set(steps) <= set(seen) or time.monotonic() > deadline:
                return seen
            await asyncio.sleep(0.05)

    async def settled(self, token: str, order_id: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            body = (await self.order(token, order_id)).json()
            if body["status"] in TERMINAL:
                return body
            assert time.monotonic() < deadline, f"order {order_id} still {body['status']} after {timeout}s"
            await asyncio.sleep(0.05)

    async def stock(self, product_id: str) -> dict:
        r = await self.client.get(f"/api/v1/inventory/{product_id}")
        assert r.status_code == 200, r.text
        return r.json()

    async def stock_at_rest(self, product_id: str, timeout: float = 15.0) -> dict:
        """Stock once no reservation is held any more (compensations are asynchronous)."""
        deadline = time.monotonic() + timeout
        while True:
            level = await self.stock(product_id)
            if level["reserved"] == 0 or time.monotonic() > deadline:
                return level
            await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
async def api(stack: Stack) -> Api:
    client = httpx.AsyncClient(base_url=stack.gateway_url, timeout=10)
    r = await client.post(
        "/api/v1/auth/login", json={"email": stack.admin_email, "password": stack.admin_password}
    )
    assert r.status_code == 200, r.text
    yield Api(client=client, admin_token=r.json()["access_token"])
    await client.aclose()

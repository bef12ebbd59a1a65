"""The catalog client with the catalog's replicas given as a list (``ORDERS_CATALOG_URL``):
lookups in turn, and around a replica that is down; an httpx MockTransport stands in for them."""

from uuid import uuid4

import httpx
import pytest

from orders.adapters.catalog import CatalogUnavailable, HttpCatalog

PRODUCT = uuid4()
ONE, TWO = "http://127.0.0.1:8001", "http://127.0.0.1:8011"


class CatalogReplicas:
    def __init__(self) -> None:
        self.down: set[int] = set()
        self.slow: set[int] = set()
        self.asked: list[int] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        port = request.url.port or 80
        if port in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        self.asked.append(port)
        if port in self.slow:
            raise httpx.ReadTimeout("timed out", request=request)
        item = {"id": str(PRODUCT), "sku": "MUG", "name": "Mug", "price_cents": 900, "currency": "USD"}
        return httpx.Response(200, json={"items": [item]})


async def catalog_on(replicas: CatalogReplicas, urls: str) -> HttpCatalog:
    catalog = HttpCatalog(urls, transport=httpx.MockTransport(replicas))
    await catalog.start()
    return catalog


async def test_price_lookups_alternate_between_the_catalogs_replicas():
    replicas = CatalogReplicas()
    catalog = await catalog_on(replicas, f"{ONE},{TWO}")

    for _ in range(4):
        assert (await catalog.prices([PRODUCT]))[PRODUCT].price_cents == 900

    assert replicas.asked == [8001, 8011, 8001, 8011]
    await catalog.stop()


async def test_a_lookup_on_a_replica_that_is_down_is_answered_by_the_other():
    replicas = CatalogReplicas()
    replicas.down = {8001}
    catalog = await catalog_on(replicas, f"{ONE},{TWO}")

    for _ in range(3):
        assert PRODUCT in await catalog.prices([PRODUCT])

    assert replicas.asked == [8011] * 3
    await catalog.stop()


async def test_with_every_replica_down_or_one_timing_out_the_order_cannot_be_priced():
    replicas = CatalogReplicas()
    replicas.down = {8001, 8011}
    catalog = await catalog_on(replicas, f"{ONE},{TWO}")
    with pytest.raises(CatalogUnavailable):
        await catalog.prices([PRODUCT])

    replicas.down, replicas.slow = set(), {8011, 8001}
    with pytest.raises(CatalogUnavailable):
        await catalog.prices([PRODUCT])
    assert len(replicas.asked) == 1, "a timeout is not waited out a second time"
    await catalog.stop()

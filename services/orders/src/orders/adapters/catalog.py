"""Prices come from the catalog service, never from the client."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

import httpx

from emporium_kit.replicas import RoundRobin


@dataclass(frozen=True)
class PricedProduct:
    product_id: UUID
    sku: str
    name: str
    price_cents: int
    currency: str


class CatalogUnavailable(Exception):
    """The catalog could not be asked (down, slow): the order is not accepted, nothing is stored."""


class PriceList(Protocol):
    async def prices(self, product_ids: Iterable[UUID]) -> dict[UUID, PricedProduct]: ...


# The request never reached the catalog, or the pooled connection died: a GET may go elsewhere.
_CONNECTION_LEVEL = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class HttpCatalog:
    """Catalog HTTP client; opened and closed with the service.

    ``base_url`` is one URL (in Kubernetes, the catalog's Service) or the catalog's replicas,
    comma-separated: each lookup goes to the next in turn, and one that fails at the connection
    level (a replica down) to the replica after it, until each was tried once. A timeout or an
    error status is not tried again: the order is refused (503) at once.
    """

    def __init__(
        self, base_url: str, *, timeout: float = 3.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._replicas = RoundRobin(base_url)
        self._timeout = timeout
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=self._timeout, limits=httpx.Limits(max_connections=100), transport=self._transport
        )

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def prices(self, product_ids: Iterable[UUID]) -> dict[UUID, PricedProduct]:
        assert self._client is not None, "start() first"
        ids = sorted({str(p) for p in product_ids})
        params: dict[str, str | int] = {"ids": ",".join(ids), "page_size": 100}
        first = self._replicas.take()
        for attempt in range(self._replicas.count):
            try:
                response = await self._client.get(
                    self._replicas.url(first, attempt) + "/products", params=params
                )
                response.raise_for_status()
                break
            except _CONNECTION_LEVEL as exc:
                if attempt + 1 < self._replicas.count:
                    continue
                raise CatalogUnavailable(
                    f"the catalog could not be reached to price the order: {exc!r}"
                ) from exc
            except httpx.HTTPError as exc:
                raise CatalogUnavailable(
                    f"the catalog could not be reached to price the order: {exc!r}"
                ) from exc
        return {
            UUID(p["id"]): PricedProduct(
                product_id=UUID(p["id"]),
                sku=p["sku"],
                name=p["name"],
                price_cents=p["price_cents"],
                currency=p["currency"],
            )
            for p in response.json()["items"]
        }

"""Prices come from the catalog service, never from the client."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

import httpx


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


class HttpCatalog:
    """Catalog HTTP client; opened and closed with the service."""

    def __init__(self, base_url: str, *, timeout: float = 3.0) -> None:
        self._base_url = base_url
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            base_url=self._base_url, timeout=self._timeout, limits=httpx.Limits(max_connections=100)
        )

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def prices(self, product_ids: Iterable[UUID]) -> dict[UUID, PricedProduct]:
        assert self._client is not None, "start() first"
        ids = sorted({str(p) for p in product_ids})
        try:
            response = await self._client.get("/products", params={"ids": ",".join(ids), "page_size": 100})
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise CatalogUnavailable(f"the catalog could not be reached to price the order: {exc!r}") from exc
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

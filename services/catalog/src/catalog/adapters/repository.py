"""Writes (and the loads that precede them) for the Product aggregate."""

from __future__ import annotations

from dataclasses import asdict
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.adapters.orm import products
from catalog.domain.model import Product


class ProductRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, product: Product) -> bool:
        """Insert; False when the sku is taken."""
        result = await self._connection.execute(
            insert(products)
            .values(**asdict(product))
            .on_conflict_do_nothing(index_elements=["sku"])
            .returning(products.c.id)
        )
        return result.first() is not None

    async def get_for_update(self, *, product_id: UUID) -> Product | None:
        row = (
            (
                await self._connection.execute(
                    sa.select(products).where(products.c.id == product_id).with_for_update()
                )
            )
            .mappings()
            .first()
        )
        return Product(**row) if row else None

    async def save(self, product: Product) -> None:
        values = asdict(product)
        values.pop("id")
        await self._connection.execute(
            sa.update(products).where(products.c.id == product.id).values(**values)
        )

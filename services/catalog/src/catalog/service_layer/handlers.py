"""Command handlers: one aggregate per transaction, events through the outbox."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from catalog.domain.commands import CreateProduct, UpdateProduct
from catalog.domain.model import DuplicateSku, Product, ProductNotFound
from catalog.service_layer.unit_of_work import CatalogUnitOfWork
from emporium_events.contracts import ProductCreated, ProductUpdated


async def create_product(cmd: CreateProduct, uow: CatalogUnitOfWork) -> Product:
    now = datetime.now(UTC)
    product = Product(
        id=cmd.product_id,
        sku=cmd.sku,
        name=cmd.name,
        description=cmd.description,
        price_cents=cmd.price_cents,
        currency=cmd.currency,
        category=cmd.category,
        created_at=now,
        updated_at=now,
    )
    if not await uow.products.add(product):
        raise DuplicateSku(cmd.sku)
    uow.publish(
        ProductCreated(
            product_id=product.id,
            sku=product.sku,
            name=product.name,
            price_cents=product.price_cents,
            currency=product.currency,
            category=product.category,
        ),
        aggregate_id=product.id,
    )
    return product


async def update_product(cmd: UpdateProduct, uow: CatalogUnitOfWork) -> Product:
    product = await uow.products.get_for_update(product_id=cmd.product_id)
    if product is None:
        raise ProductNotFound(cmd.product_id)
    changed = product.revise(
        name=cmd.name,
        description=cmd.description,
        price_cents=cmd.price_cents,
        currency=cmd.currency,
        category=cmd.category,
        at=datetime.now(UTC),
    )
    if not changed:
        return product  # nothing to write and nothing to announce
    await uow.products.save(product)
    uow.publish(
        ProductUpdated(
            product_id=product.id,
            sku=product.sku,
            name=product.name,
            price_cents=product.price_cents,
            currency=product.currency,
            category=product.category,
        ),
        aggregate_id=product.id,
    )
    return product


COMMANDS: dict[type, Callable[..., Awaitable[Any]]] = {
    CreateProduct: create_product,
    UpdateProduct: update_product,
}

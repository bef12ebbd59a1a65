from copy import deepcopy
from uuid import UUID, uuid4

import pytest

from catalog.domain.commands import CreateProduct, UpdateProduct
from catalog.domain.model import DuplicateSku, Product, ProductNotFound
from catalog.service_layer import handlers
from emporium_events.testing import FakeUnitOfWork


class FakeProducts:
    def __init__(self) -> None:
        self.rows: dict[UUID, Product] = {}

    async def add(self, product: Product) -> bool:
        if any(p.sku == product.sku for p in self.rows.values()):
            return False
        self.rows[product.id] = deepcopy(product)
        return True

    async def get_for_update(self, *, product_id: UUID) -> Product | None:
        return deepcopy(self.rows.get(product_id))

    async def save(self, product: Product) -> None:
        self.rows[product.id] = deepcopy(product)


class FakeUoW(FakeUnitOfWork):
    def __init__(self) -> None:
        super().__init__()
        self.products = FakeProducts()


def create(sku="MUG-1", price=1250):
    return CreateProduct(
        product_id=uuid4(),
        sku=sku,
        name="Mug",
        description="",
        price_cents=price,
        currency="USD",
        category="kitchen",
    )


async def test_a_new_product_is_stored_and_announced_with_its_price():
    uow = FakeUoW()
    product = await handlers.create_product(create(), uow)
    assert uow.products.rows[product.id].price_cents == 1250
    [event] = uow.published
    assert type(event).__name__ == "ProductCreated" and event.product_id == product.id and uow.committed == 1


async def test_a_second_product_with_the_same_sku_is_refused_and_not_announced():
    uow = FakeUoW()
    await handlers.create_product(create(), uow)
    with pytest.raises(DuplicateSku):
        await handlers.create_product(create(), uow)
    assert len(uow.published) == 1 and uow.committed == 1


async def test_updating_a_product_changes_it_and_announces_the_new_price():
    uow = FakeUoW()
    product = await handlers.create_product(create(), uow)
    await handlers.update_product(
        UpdateProduct(
            product_id=product.id,
            name="Big mug",
            description="d",
            price_cents=1500,
            currency="USD",
            category=None,
        ),
        uow,
    )
    assert uow.products.rows[product.id].name == "Big mug"
    assert (
        uow.published_types() == ["ProductCreated", "ProductUpdated"] and uow.published[1].price_cents == 1500
    )


async def test_updating_a_missing_product_is_not_found():
    with pytest.raises(ProductNotFound):
        await handlers.update_product(
            UpdateProduct(
                product_id=uuid4(), name="x", description="", price_cents=1, currency="USD", category=None
            ),
            FakeUoW(),
        )

"""Orders prices from its own copy of the catalog's prices, kept from the catalog's events, and
asks the catalog only for a product whose event has not arrived yet."""

from uuid import uuid4

from orders_fakes import FakeOrdersUoW, FakePriceList
from test_saga import ENV, MUG, command, place

from emporium_events.contracts import ProductCreated, ProductUpdated
from emporium_events.envelope import Envelope
from orders.adapters.catalog import PricedProduct
from orders.service_layer import handlers


def created(product: PricedProduct) -> ProductCreated:
    return ProductCreated(
        product_id=product.product_id,
        sku=product.sku,
        name=product.name,
        price_cents=product.price_cents,
        currency=product.currency,
    )


async def test_a_product_known_from_its_event_is_priced_without_asking_the_catalog():
    uow, catalog = FakeOrdersUoW(), FakePriceList(MUG)
    await handlers.on_product_priced(created(MUG), ENV, uow)
    order, _ = await place(command((MUG, 2)), uow, catalog)
    assert order.total_cents == 2 * MUG.price_cents
    assert catalog.asked == []


async def test_a_product_whose_event_has_not_arrived_is_priced_by_the_catalog():
    uow, catalog = FakeOrdersUoW(), FakePriceList(MUG)
    order, _ = await place(command((MUG, 1)), uow, catalog)
    assert order.total_cents == MUG.price_cents
    assert catalog.asked == [[MUG.product_id]]


async def test_a_price_change_applies_to_the_next_order_not_to_orders_already_placed():
    uow, catalog = FakeOrdersUoW(), FakePriceList()
    await handlers.on_product_priced(created(MUG), ENV, uow)
    first, _ = await place(command((MUG, 1)), uow, catalog)
    await handlers.on_product_priced(
        ProductUpdated(
            product_id=MUG.product_id, sku=MUG.sku, name=MUG.name, price_cents=999, currency="USD"
        ),
        Envelope(event_type="x", version=1, producer="t", aggregate_id=str(uuid4()), payload={}),
        uow,
    )
    second, _ = await place(command((MUG, 1)), uow, catalog)
    assert (first.total_cents, second.total_cents) == (MUG.price_cents, 999)
    assert uow.orders.rows[first.id].total_cents == MUG.price_cents

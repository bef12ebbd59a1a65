from copy import deepcopy
from uuid import UUID, uuid4

import httpx
import pytest

from catalog.bootstrap import build_app
from catalog.domain.commands import CreateProduct, UpdateProduct
from catalog.domain.model import DuplicateSku, Product, ProductNotFound
from catalog.service_layer import handlers
from emporium_events.bus import MessageBus
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


async def run(cmd, uow):
    """Through the bus, as the routes do: it commits."""
    return await MessageBus(lambda: uow, commands=handlers.COMMANDS).handle(cmd)


def create(sku="MUG-1", price=1250, currency="USD", description=""):
    return CreateProduct(
        product_id=uuid4(),
        sku=sku,
        name="Mug",
        description=description,
        price_cents=price,
        currency=currency,
        category="kitchen",
    )


async def test_a_new_product_is_stored_and_announced_with_its_price():
    uow = FakeUoW()
    product = await run(create(), uow)
    assert uow.products.rows[product.id].price_cents == 1250
    [event] = uow.published
    assert type(event).__name__ == "ProductCreated" and event.product_id == product.id and uow.committed == 1


async def test_a_second_product_with_the_same_sku_is_refused_and_not_announced():
    uow = FakeUoW()
    await run(create(), uow)
    with pytest.raises(DuplicateSku):
        await run(create(), uow)
    assert len(uow.published) == 1 and uow.committed == 1


async def test_updating_a_product_changes_it_and_announces_the_new_price():
    uow = FakeUoW()
    product = await run(create(), uow)
    await run(
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
        await run(
            UpdateProduct(
                product_id=uuid4(), name="x", description="", price_cents=1, currency="USD", category=None
            ),
            FakeUoW(),
        )


async def test_an_update_that_names_only_the_price_keeps_every_other_field():
    uow = FakeUoW()
    product = await run(create(currency="EUR", description="Stoneware, 350 ml"), uow)

    await run(UpdateProduct(product_id=product.id, price_cents=1400), uow)

    stored = uow.products.rows[product.id]
    assert (stored.price_cents, stored.currency, stored.description) == (1400, "EUR", "Stoneware, 350 ml")
    assert (stored.name, stored.category, stored.sku) == ("Mug", "kitchen", "MUG-1")
    assert uow.published[1].currency == "EUR" and uow.published[1].price_cents == 1400


async def test_an_update_that_changes_nothing_writes_and_announces_nothing():
    uow = FakeUoW()
    product = await run(create(), uow)

    same = await run(UpdateProduct(product_id=product.id, price_cents=1250), uow)

    assert same.updated_at == product.updated_at
    assert uow.published_types() == ["ProductCreated"]


# ---------------------------------------------------------------------------- HTTP: PUT and PATCH

PROBLEM = "application/problem+json"


class FakeRuntime:
    """The part of ``Runtime`` the product routes use: a unit of work (here the fake one)."""

    def __init__(self, uow: FakeUoW) -> None:
        self.bus = MessageBus(lambda: uow, commands=handlers.COMMANDS)


@pytest.fixture
def uow() -> FakeUoW:
    return FakeUoW()


@pytest.fixture
async def api(uow):
    app = build_app()
    app.state.runtime = FakeRuntime(uow)  # no lifespan: nothing to connect to
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://catalog") as client:
        yield client


@pytest.fixture
async def euro_mug(uow):
    return await run(create(currency="EUR", description="Stoneware, 350 ml"), uow)


async def test_patching_only_the_price_of_a_euro_product_keeps_its_currency_and_description(
    api, uow, euro_mug
):
    response = await api.patch(f"/products/{euro_mug.id}", json={"price_cents": 1400})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["price_cents"], body["currency"], body["description"]) == (1400, "EUR", "Stoneware, 350 ml")
    assert body["category"] == "kitchen" and body["name"] == "Mug"
    assert uow.products.rows[euro_mug.id].currency == "EUR"


async def test_a_merge_patch_content_type_is_accepted(api, euro_mug):
    response = await api.patch(
        f"/products/{euro_mug.id}",
        content=b'{"name": "Tall mug"}',
        headers={"content-type": "application/merge-patch+json"},
    )

    assert response.status_code == 200 and response.json()["name"] == "Tall mug"


async def test_a_patch_with_null_clears_the_category(api, uow, euro_mug):
    response = await api.patch(f"/products/{euro_mug.id}", json={"category": None})

    assert response.status_code == 200 and response.json()["category"] is None
    assert uow.products.rows[euro_mug.id].currency == "EUR"


@pytest.mark.parametrize("field", ["name", "description", "price_cents", "currency"])
async def test_a_patch_with_null_for_a_field_that_cannot_be_unset_is_a_422_naming_it(
    api, uow, euro_mug, field
):
    response = await api.patch(f"/products/{euro_mug.id}", json={"price_cents": 1, field: None})

    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
    assert f"{field}: " in response.json()["detail"] and "cannot be null" in response.json()["detail"]
    assert uow.products.rows[euro_mug.id].price_cents == 1250 and uow.published_types() == ["ProductCreated"]


async def test_a_patch_is_validated_like_a_new_product(api, euro_mug):
    response = await api.patch(f"/products/{euro_mug.id}", json={"currency": "euro"})

    assert response.status_code == 422 and "currency" in response.json()["detail"]


async def test_a_put_replaces_every_field(api, uow, euro_mug):
    replacement = {
        "name": "Big mug",
        "description": "",
        "price_cents": 1500,
        "currency": "USD",
        "category": None,
    }

    response = await api.put(f"/products/{euro_mug.id}", json=replacement)

    assert response.status_code == 200
    assert {k: response.json()[k] for k in replacement} == replacement
    assert uow.published_types() == ["ProductCreated", "ProductUpdated"]


async def test_a_put_that_leaves_out_a_field_is_a_422_naming_it_and_resets_nothing(api, uow, euro_mug):
    response = await api.put(f"/products/{euro_mug.id}", json={"name": "Mug", "price_cents": 1400})

    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
    detail = response.json()["detail"]
    assert all(f"{f}: Field required" in detail for f in ("description", "currency", "category")), detail
    stored = uow.products.rows[euro_mug.id]
    assert (stored.price_cents, stored.currency, stored.description) == (1250, "EUR", "Stoneware, 350 ml")


async def test_patching_a_missing_product_is_a_404_problem(api):
    response = await api.patch(f"/products/{uuid4()}", json={"price_cents": 1})

    assert response.status_code == 404 and response.headers["content-type"] == PROBLEM
    assert "does not exist" in response.json()["detail"]

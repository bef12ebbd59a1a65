"""The public edge: who may do what, and how every refusal reads."""

from __future__ import annotations

from uuid import uuid4

PROBLEM = "application/problem+json"


async def test_a_customer_cannot_read_another_customers_order(api):
    product = await api.product(stock=2)
    _, alice = await api.customer()
    _, bob = await api.customer()
    order = await api.place(alice, product, 1)
    r = await api.order(bob, order["id"])
    assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)
    assert (await api.order(alice, order["id"])).status_code == 200
    listed = (await api.client.get("/api/v1/orders", headers=api.auth(bob))).json()
    assert order["id"] not in [o["id"] for o in listed]


async def test_protected_routes_answer_401_without_a_token_and_403_for_the_wrong_role(api):
    r = await api.client.post("/api/v1/orders", json={"items": [], "payment_token": "tok_visa"})
    assert r.status_code == 401 and r.headers["content-type"].startswith(PROBLEM) and r.json()["detail"]
    _, token = await api.customer()
    r = await api.client.post(
        "/api/v1/products",
        headers=api.auth(token),
        json={"sku": "NOPE", "name": "x", "price_cents": 1, "currency": "USD"},
    )
    assert r.status_code == 403 and r.headers["content-type"].startswith(PROBLEM)


async def test_a_malformed_order_is_422_problem_json_and_creates_nothing(api):
    _, token = await api.customer()
    for body in (
        {"items": [{"product_id": "not-a-uuid", "quantity": 1}], "payment_token": "tok_visa"},
        {"items": [{"product_id": str(uuid4()), "quantity": 0}], "payment_token": "tok_visa"},
        {"items": [], "payment_token": "tok_visa"},
        {"payment_token": "tok_visa"},
    ):
        r = await api.client.post("/api/v1/orders", headers=api.auth(token), json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith(PROBLEM) and r.json()["detail"]
    r = await api.client.post(
        "/api/v1/orders",
        headers=api.auth(token),
        content=b"{broken json",
    )
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
    assert (await api.client.get("/api/v1/orders", headers=api.auth(token))).json() == []


async def test_an_order_for_a_product_that_does_not_exist_is_refused_with_a_clear_detail(api):
    _, token = await api.customer()
    r = await api.client.post(
        "/api/v1/orders",
        headers=api.auth(token),
        json={"items": [{"product_id": str(uuid4()), "quantity": 1}], "payment_token": "tok_visa"},
    )
    assert r.status_code == 422 and "unknown product" in r.json()["detail"]


async def test_registering_an_email_twice_is_a_conflict_and_a_wrong_password_is_401(api):
    email = f"dup-{uuid4().hex[:8]}@example.com"
    first = await api.client.post(
        "/api/v1/auth/register", json={"email": email, "password": "long enough", "name": "A"}
    )
    assert first.status_code == 201 and first.json()["role"] == "customer"
    again = await api.client.post(
        "/api/v1/auth/register", json={"email": email, "password": "long enough", "name": "B"}
    )
    assert again.status_code == 409 and again.headers["content-type"].startswith(PROBLEM)
    wrong = await api.client.post("/api/v1/auth/login", json={"email": email, "password": "not the one"})
    assert wrong.status_code == 401


async def test_the_catalog_lists_searches_and_pages_products_with_their_availability(api):
    tag = uuid4().hex[:8]
    for n in range(3):
        r = await api.client.post(
            "/api/v1/products",
            headers=api.auth(api.admin_token),
            json={
                "sku": f"P-{tag}-{n}",
                "name": f"Lantern {tag} {n}",
                "price_cents": 100 + n,
                "currency": "USD",
                "category": "lights",
            },
        )
        assert r.status_code == 201
    page = (await api.client.get("/api/v1/products", params={"q": tag, "page": 1, "page_size": 2})).json()
    assert page["total"] == 3 and page["page_size"] == 2 and len(page["items"]) == 2
    assert all(item["available"] == 0 for item in page["items"])
    second = (await api.client.get("/api/v1/products", params={"q": tag, "page": 2, "page_size": 2})).json()
    assert len(second["items"]) == 1


async def test_the_gateway_is_ready_only_when_every_service_is(api):
    r = await api.client.get("/readyz")
    assert r.status_code == 200


async def test_patching_only_a_products_price_keeps_its_currency_and_description(api):
    admin = api.auth(api.admin_token)
    created = await api.client.post(
        "/api/v1/products",
        headers=admin,
        json={
            "sku": f"EUR-{uuid4().hex[:8]}",
            "name": "Espresso cup",
            "description": "Porcelain, 80 ml",
            "price_cents": 900,
            "currency": "EUR",
            "category": "kitchen",
        },
    )
    assert created.status_code == 201, created.text
    path = f"/api/v1/products/{created.json()['id']}"

    patched = await api.client.patch(path, headers=admin, json={"price_cents": 950})
    assert patched.status_code == 200, patched.text
    partial_put = await api.client.put(path, headers=admin, json={"price_cents": 1})
    assert partial_put.status_code == 422 and partial_put.headers["content-type"].startswith(PROBLEM)

    product = (await api.client.get(path)).json()
    assert (product["price_cents"], product["currency"], product["description"]) == (
        950,
        "EUR",
        "Porcelain, 80 ml",
    )
    assert product["category"] == "kitchen" and product["name"] == "Espresso cup"

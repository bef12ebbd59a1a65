import json
import uuid

import httpx

PROBLEM = "application/problem+json"
PRODUCT_ID = str(uuid.uuid4())


def an_order(**overrides):
    return {"items": [{"product_id": PRODUCT_ID, "quantity": 2}], "payment_token": "tok_visa", **overrides}


# ---------------------------------------------------------------------------- who may call


async def test_a_protected_route_without_a_token_is_a_401_bearer_challenge(gateway, services) -> None:
    response = await gateway.post("/api/v1/orders", json=an_order())

    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Bearer" in response.json()["detail"]
    assert services.calls == []


async def test_a_garbage_or_expired_token_is_a_401_naming_the_reason(gateway, expired_token) -> None:
    garbage = await gateway.get("/api/v1/orders", headers={"Authorization": "Bearer not.a.jwt"})
    expired = await gateway.get("/api/v1/orders", headers={"Authorization": f"Bearer {expired_token}"})

    assert garbage.status_code == expired.status_code == 401
    assert "expired" in expired.json()["detail"]
    assert expired.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert garbage.headers["content-type"] == PROBLEM


async def test_a_customer_calling_an_admin_route_is_a_403_problem(gateway, as_customer, services) -> None:
    response = await gateway.post(
        "/api/v1/products",
        headers=as_customer,
        json={"sku": "A-1", "name": "Anvil", "price_cents": 1999, "currency": "USD"},
    )

    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM
    assert "admin" in response.json()["detail"]
    assert services.calls == []


# ---------------------------------------------------------------------------- what is forwarded


async def test_an_admin_creates_a_product_through_the_catalog_with_its_identity(
    gateway, as_admin, admin, services
) -> None:
    created = {"id": PRODUCT_ID, "sku": "A-1", "name": "Anvil", "price_cents": 1999, "currency": "USD"}
    services.reply("catalog", "POST", "/products", 201, created)
    body = {"sku": "A-1", "name": "Anvil", "price_cents": 1999, "currency": "USD", "weight_grams": 9000}

    response = await gateway.post("/api/v1/products", headers=as_admin, json=body)

    assert response.status_code == 201 and response.json() == created
    [sent] = services.requests_to("catalog")
    assert json.loads(sent.content) == body  # unknown fields pass through for the catalog to judge
    assert sent.headers["x-user-id"] == str(admin.id)
    assert sent.headers["x-user-role"] == "admin"
    assert sent.headers["x-user-email"] == admin.email


async def test_identity_headers_sent_by_a_client_never_reach_a_service(
    gateway, as_customer, customer, services
) -> None:
    services.reply("orders", "GET", "/orders", 200, {"items": []})
    spoofed = {**as_customer, "X-User-Role": "admin", "X-User-Id": str(uuid.uuid4())}

    await gateway.get("/api/v1/orders", headers=spoofed)
    await gateway.get(f"/api/v1/inventory/{PRODUCT_ID}", headers={"X-User-Role": "admin"})

    [orders_call] = services.requests_to("orders")
    assert orders_call.headers.get_list("x-user-role") == ["customer"]
    assert orders_call.headers["x-user-id"] == str(customer.id)
    [inventory_call] = services.requests_to("inventory")
    assert "x-user-role" not in inventory_call.headers


async def test_placing_an_order_forwards_the_idempotency_key_and_trace_context(
    gateway, as_customer, services
) -> None:
    order_id = str(uuid.uuid4())
    services.reply("orders", "POST", "/orders", 202, {"id": order_id, "status": "PENDING"})
    incoming_trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    response = await gateway.post(
        "/api/v1/orders",
        json=an_order(),
        headers={**as_customer, "Idempotency-Key": "k-123", "traceparent": incoming_trace},
    )

    assert response.status_code == 202 and response.json() == {"id": order_id, "status": "PENDING"}
    [sent] = services.requests_to("orders")
    assert sent.headers["idempotency-key"] == "k-123"
    assert sent.headers["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")  # same trace
    assert json.loads(sent.content) == an_order()


async def test_a_valid_order_body_reaches_the_orders_service_byte_for_byte(
    gateway, as_customer, services
) -> None:
    services.reply("orders", "POST", "/orders", 202, {"id": str(uuid.uuid4()), "status": "PENDING"})
    raw = b'{"items": [{"product_id": "%s", "quantity": 2, "gift": true}],\n "payment_token": "tok_visa"}' % (
        PRODUCT_ID.upper().encode()
    )

    response = await gateway.post(
        "/api/v1/orders", content=raw, headers={**as_customer, "Content-Type": "application/json"}
    )

    assert response.status_code == 202
    [sent] = services.requests_to("orders")
    assert sent.content == raw  # validated, not serialised again: unknown fields and spelling kept
    assert sent.headers["content-type"] == "application/json"


async def test_order_bodies_are_validated_at_the_gateway(gateway, as_customer, services) -> None:
    too_many = [{"product_id": str(uuid.uuid4()), "quantity": 1} for _ in range(101)]
    bad_bodies = [
        an_order(items=[{"product_id": PRODUCT_ID, "quantity": 0}]),
        an_order(items=[{"product_id": PRODUCT_ID, "quantity": 1001}]),
        an_order(items=[{"product_id": "not-a-uuid", "quantity": 1}]),
        an_order(items=[]),
        an_order(items=too_many),
        an_order(payment_token=""),
        an_order(payment_token="x" * 201),
        {"items": [{"product_id": PRODUCT_ID, "quantity": 1}]},
    ]

    for body in bad_bodies:
        response = await gateway.post("/api/v1/orders", json=body, headers=as_customer)
        assert response.status_code == 422, body
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["detail"]
    assert services.calls == []


# ---------------------------------------------------------------------------- product updates

A_PRODUCT = {
    "id": PRODUCT_ID,
    "sku": "MUG-1",
    "name": "Mug",
    "description": "Stoneware, 350 ml",
    "price_cents": 1400,
    "currency": "EUR",
    "category": "kitchen",
}


async def test_a_patch_sends_the_catalog_only_the_fields_it_names(gateway, as_admin, services) -> None:
    services.reply("catalog", "PATCH", f"/products/{PRODUCT_ID}", 200, A_PRODUCT)

    response = await gateway.patch(
        f"/api/v1/products/{PRODUCT_ID}", headers=as_admin, json={"price_cents": 1400}
    )

    assert response.status_code == 200 and response.json() == A_PRODUCT
    [sent] = services.requests_to("catalog")
    assert sent.method == "PATCH" and json.loads(sent.content) == {"price_cents": 1400}


async def test_a_merge_patch_with_null_clears_the_category_and_the_null_reaches_the_catalog(
    gateway, as_admin, services
) -> None:
    services.reply("catalog", "PATCH", f"/products/{PRODUCT_ID}", 200, {**A_PRODUCT, "category": None})

    response = await gateway.patch(
        f"/api/v1/products/{PRODUCT_ID}",
        headers={**as_admin, "content-type": "application/merge-patch+json"},
        content=b'{"category": null}',
    )

    assert response.status_code == 200
    [sent] = services.requests_to("catalog")
    assert json.loads(sent.content) == {"category": None}


async def test_a_patch_with_null_for_a_field_that_cannot_be_unset_is_a_422_at_the_gateway(
    gateway, as_admin, services
) -> None:
    for field in ("name", "description", "price_cents", "currency"):
        response = await gateway.patch(f"/api/v1/products/{PRODUCT_ID}", headers=as_admin, json={field: None})

        assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
        assert f"{field}: " in response.json()["detail"] and "cannot be null" in response.json()["detail"]
    assert services.calls == []


async def test_a_put_must_name_every_field_so_a_partial_one_resets_nothing(
    gateway, as_admin, services
) -> None:
    response = await gateway.put(
        f"/api/v1/products/{PRODUCT_ID}", headers=as_admin, json={"price_cents": 1400}
    )

    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
    detail = response.json()["detail"]
    assert all(f"{f}: Field required" in detail for f in ("name", "description", "currency", "category"))
    assert services.calls == []


async def test_a_full_put_is_relayed_to_the_catalogs_put(gateway, as_admin, services) -> None:
    services.reply("catalog", "PUT", f"/products/{PRODUCT_ID}", 200, A_PRODUCT)
    replacement = {k: A_PRODUCT[k] for k in ("name", "description", "price_cents", "currency", "category")}

    response = await gateway.put(f"/api/v1/products/{PRODUCT_ID}", headers=as_admin, json=replacement)

    assert response.status_code == 200
    [sent] = services.requests_to("catalog")
    assert sent.method == "PUT" and json.loads(sent.content) == replacement


async def test_product_values_the_catalog_would_refuse_are_refused_at_the_gateway(
    gateway, as_admin, services
) -> None:
    new = {"sku": "MUG-2", "name": "Mug", "price_cents": 1}
    refused = [
        ("post", "/api/v1/products", {**new, "currency": "eur"}),
        ("post", "/api/v1/products", {**new, "sku": "MUG 2"}),  # the catalog's sku pattern
        ("post", "/api/v1/products", {**new, "description": "x" * 5001}),
        ("post", "/api/v1/products", {**new, "currency": None}),
        ("patch", f"/api/v1/products/{PRODUCT_ID}", {"price_cents": 10**10 + 1}),
        ("patch", f"/api/v1/products/{PRODUCT_ID}", {"category": "x" * 101}),
        ("patch", f"/api/v1/products/{PRODUCT_ID}", {"name": "   "}),  # blank once stripped, as there
    ]

    for method, path, body in refused:
        response = await gateway.request(method, path, headers=as_admin, json=body)
        assert response.status_code == 422, (method, body)
        assert response.headers["content-type"] == PROBLEM and response.json()["detail"]
    assert services.calls == []


async def test_a_path_id_that_is_not_a_uuid_is_a_422_not_a_500(gateway, as_customer) -> None:
    response = await gateway.get("/api/v1/orders/42", headers=as_customer)

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


# ---------------------------------------------------------------------------- what comes back


async def test_a_service_problem_is_passed_through_with_its_status_and_media_type(
    gateway, as_customer, services
) -> None:
    order_id = uuid.uuid4()

    response = await gateway.get(f"/api/v1/orders/{order_id}", headers=as_customer)  # unscripted: 404 problem

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["detail"] == "nope"


async def test_a_service_crash_is_a_502_problem_not_a_500(gateway, services) -> None:
    services.reply("inventory", "GET", f"/inventory/{PRODUCT_ID}", 500, text="Internal Server Error")

    response = await gateway.get(f"/api/v1/inventory/{PRODUCT_ID}")

    assert response.status_code == 502
    assert response.headers["content-type"] == PROBLEM
    assert "inventory" in response.json()["detail"]


async def test_an_unreachable_service_is_a_503_with_retry_after(gateway, as_customer, services) -> None:
    services.replies[("orders", "POST", "/orders")] = httpx.ConnectError

    response = await gateway.post("/api/v1/orders", json=an_order(), headers=as_customer)

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["service"] == "orders"
    assert len(services.requests_to("orders")) == 1  # a POST is never repeated


async def test_a_service_that_times_out_is_a_503(gateway, services) -> None:
    services.replies[("inventory", "GET", f"/inventory/{PRODUCT_ID}")] = [httpx.ReadTimeout]

    response = await gateway.get(f"/api/v1/inventory/{PRODUCT_ID}")

    assert response.status_code == 503
    assert "timed out" in response.json()["detail"]
    assert len(services.requests_to("inventory")) == 1


async def test_a_get_is_retried_once_after_a_connection_error(gateway, services) -> None:
    level = {"product_id": PRODUCT_ID, "on_hand": 5, "reserved": 1, "available": 4}
    services.replies[("inventory", "GET", f"/inventory/{PRODUCT_ID}")] = [
        httpx.ConnectError,
        httpx.Response(200, json=level),
    ]

    response = await gateway.get(f"/api/v1/inventory/{PRODUCT_ID}")

    assert response.status_code == 200 and response.json() == level
    assert len(services.requests_to("inventory")) == 2


# ---------------------------------------------------------------------------- composed reads


async def test_the_product_list_adds_availability_with_missing_stock_as_zero(gateway, services) -> None:
    stocked, unstocked = str(uuid.uuid4()), str(uuid.uuid4())
    services.reply(
        "catalog",
        "GET",
        "/products",
        200,
        {
            "items": [{"id": stocked, "name": "Anvil"}, {"id": unstocked, "name": "Rope"}],
            "total": 2,
            "page": 2,
            "page_size": 2,
        },
    )
    services.reply(
        "inventory",
        "GET",
        "/inventory",
        200,
        {
            "items": [{"product_id": stocked, "on_hand": 9, "reserved": 2, "available": 7}],
        },
    )

    response = await gateway.get("/api/v1/products", params={"q": "an", "page": 2, "page_size": 2})

    assert response.status_code == 200
    body = response.json()
    assert [(p["id"], p["available"]) for p in body["items"]] == [(stocked, 7), (unstocked, 0)]
    assert (body["total"], body["page"], body["page_size"]) == (2, 2, 2)
    [catalog_call] = services.requests_to("catalog")
    assert dict(catalog_call.url.params) == {"q": "an", "page": "2", "page_size": "2"}
    [inventory_call] = services.requests_to("inventory")
    assert inventory_call.url.params["ids"] == f"{stocked},{unstocked}"


async def test_an_empty_product_page_does_not_ask_the_inventory(gateway, services) -> None:
    services.reply("catalog", "GET", "/products", 200, {"items": [], "total": 0, "page": 1, "page_size": 20})

    response = await gateway.get("/api/v1/products")

    assert response.json()["items"] == []
    assert services.requests_to("inventory") == []


async def test_a_page_size_out_of_range_is_a_422(gateway) -> None:
    response = await gateway.get("/api/v1/products", params={"page_size": 1000})

    assert response.status_code == 422


async def test_a_product_without_a_stock_record_is_shown_as_unavailable(gateway, services) -> None:
    product = {
        "id": PRODUCT_ID,
        "sku": "A-1",
        "name": "Anvil",
        "description": "",
        "price_cents": 1999,
        "currency": "USD",
        "category": "tools",
    }
    services.reply("catalog", "GET", f"/products/{PRODUCT_ID}", 200, product)

    response = await gateway.get(f"/api/v1/products/{PRODUCT_ID}")

    assert response.status_code == 200
    assert response.json() == {**product, "available": 0}


async def test_an_unknown_product_is_the_catalogs_404(gateway, services) -> None:
    response = await gateway.get(f"/api/v1/products/{uuid.uuid4()}")

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


async def test_products_are_still_served_when_the_inventory_is_down_with_stock_unknown(
    gateway, services
) -> None:
    product = str(uuid.uuid4())
    services.reply(
        "catalog",
        "GET",
        "/products",
        200,
        {"items": [{"id": product, "name": "Anvil"}], "total": 1, "page": 1, "page_size": 20},
    )
    services.reply("catalog", "GET", f"/products/{product}", 200, {"id": product, "name": "Anvil"})
    services.replies[("inventory", "GET", "/inventory")] = [httpx.ConnectError] * 2
    services.replies[("inventory", "GET", f"/inventory/{product}")] = [httpx.ConnectError] * 2

    listed = await gateway.get("/api/v1/products")
    one = await gateway.get(f"/api/v1/products/{product}")

    assert listed.status_code == one.status_code == 200
    assert listed.json()["items"][0]["available"] is None and one.json()["available"] is None
    assert listed.headers["x-emporium-degraded"] == one.headers["x-emporium-degraded"] == "inventory"

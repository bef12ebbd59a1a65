"""X-Request-ID: accepted or made at the edge, echoed, quoted in problems, forwarded upstream."""

import re

EMPTY_PAGE = {"items": [], "total": 0, "page": 1, "page_size": 20}


async def test_a_request_without_an_id_gets_a_new_one_echoed_and_forwarded_to_the_service(gateway, services):
    services.reply("catalog", "GET", "/products", 200, EMPTY_PAGE)

    response = await gateway.get("/api/v1/products")

    request_id = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    (forwarded,) = [r for s, r in services.calls if s == "catalog"]
    assert forwarded.headers["x-request-id"] == request_id


async def test_the_callers_request_id_is_kept_end_to_end(gateway, services):
    services.reply("catalog", "GET", "/products", 200, EMPTY_PAGE)

    response = await gateway.get("/api/v1/products", headers={"X-Request-ID": "checkout-42.retry:1"})

    assert response.headers["x-request-id"] == "checkout-42.retry:1"
    (forwarded,) = [r for s, r in services.calls if s == "catalog"]
    assert forwarded.headers["x-request-id"] == "checkout-42.retry:1"


async def test_a_request_id_with_spaces_or_too_long_is_replaced_not_trusted(gateway, services):
    services.reply("catalog", "GET", "/products", 200, EMPTY_PAGE)

    for unsafe in ("two words", "x" * 129, "semi;colon"):
        response = await gateway.get("/api/v1/products", headers={"X-Request-ID": unsafe})

        assert response.headers["x-request-id"] != unsafe
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


async def test_a_problem_body_quotes_the_request_id(gateway):
    response = await gateway.get("/api/v1/orders/not-a-uuid", headers={"X-Request-ID": "req-7"})

    assert response.status_code in (401, 422)
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["request_id"] == "req-7" == response.headers["x-request-id"]

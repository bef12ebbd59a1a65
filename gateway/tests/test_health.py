import logging

PROBLEM = "application/problem+json"


async def test_liveness_is_always_ok(gateway, store, services) -> None:
    store.is_ready = False
    services.down.add("orders")

    assert (await gateway.get("/healthz")).status_code == 200


async def test_ready_when_the_database_and_every_service_are_ready(gateway, services) -> None:
    response = await gateway.get("/readyz")

    assert response.status_code == 200
    assert {s for s, r in services.calls if r.url.path == "/readyz"} == {
        "catalog",
        "inventory",
        "orders",
        "payments",
        "notifications",
    }


async def test_not_ready_lists_what_is_not_ready(gateway, store, services) -> None:
    store.is_ready = False
    services.down.add("payments")

    response = await gateway.get("/readyz")

    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["detail"] == "not ready: database, payments"
    assert body["checks"]["catalog"] is True


async def test_metrics_include_upstream_call_durations_and_the_otel_request_histogram_by_route(
    gateway, services
) -> None:
    services.reply("catalog", "GET", "/products", 200, {"items": [], "total": 0, "page": 1, "page_size": 20})
    await gateway.get("/api/v1/products")

    metrics = (await gateway.get("/metrics")).text

    assert (
        'emporium_gateway_upstream_request_duration_seconds_count{method="GET",service="catalog"' in metrics
    )
    assert (
        "http_server_request_duration_seconds_count{"
        'http_request_method="GET",http_response_status_code="200",http_route="/api/v1/products"}' in metrics
    )


async def test_uvicorn_writes_no_access_log_line_per_request(gateway) -> None:
    # uvicorn logs access only if its logger has a handler; access_log=False removes its own, and
    # this keeps the root's out of reach (pytest's capture handlers sit on the logger itself).
    assert logging.getLogger("uvicorn.access").propagate is False

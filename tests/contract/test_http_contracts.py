"""HTTP contracts between services, checked against each provider's own OpenAPI document.

Each expectation is what a consumer's code reads from a provider's answer (consumer-driven):
if a provider renames or drops one of these fields, this fails before a deploy does.
"""

from __future__ import annotations

import pytest

from catalog.bootstrap import build_app as catalog_app
from inventory.bootstrap import build_app as inventory_app
from notifications.bootstrap import build_app as notifications_app
from orders.bootstrap import build_app as orders_app

PROVIDERS = {
    "catalog": catalog_app,
    "inventory": inventory_app,
    "orders": orders_app,
    "notifications": notifications_app,
}

# (consumer, provider, method, path, JSON path to an object, fields the consumer reads)
EXPECTATIONS = [
    ("orders", "catalog", "get", "/products", "items[]", {"id", "sku", "name", "price_cents", "currency"}),
    ("gateway", "catalog", "get", "/products", "", {"items", "total", "page", "page_size"}),
    (
        "gateway",
        "catalog",
        "get",
        "/products/{product_id}",
        "",
        {"id", "sku", "name", "description", "price_cents", "currency", "category"},
    ),
    ("gateway", "catalog", "post", "/products", "", {"id", "sku", "name", "price_cents", "currency"}),
    (
        "gateway",
        "inventory",
        "get",
        "/inventory",
        "items[]",
        {"product_id", "on_hand", "reserved", "available"},
    ),
    (
        "gateway",
        "inventory",
        "put",
        "/inventory/{product_id}",
        "",
        {"product_id", "on_hand", "reserved", "available"},
    ),
    ("gateway", "orders", "post", "/orders", "", {"id", "status", "items", "total_cents", "currency"}),
    (
        "gateway",
        "orders",
        "get",
        "/orders/{order_id}",
        "",
        {"id", "status", "items", "total_cents", "currency", "cancel_reason", "history"},
    ),
    ("gateway", "orders", "get", "/orders", "[]", {"id", "status"}),
    ("gateway", "notifications", "get", "/notifications", "[]", {"type", "order_id"}),
]


def _resolve(schema: dict, spec: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _response_object(spec: dict, method: str, path: str, pointer: str) -> dict:
    operation = spec["paths"][path][method]
    status = next(code for code in operation["responses"] if code.startswith("2"))
    schema = _resolve(operation["responses"][status]["content"]["application/json"]["schema"], spec)
    for step in filter(None, pointer.replace("[]", ".[]").split(".")):
        schema = _resolve(schema["items"] if step == "[]" else schema["properties"][step], spec)
    return schema


@pytest.fixture(scope="module")
def specs() -> dict[str, dict]:
    return {name: build().openapi() for name, build in PROVIDERS.items()}


@pytest.mark.parametrize(
    "consumer,provider,method,path,pointer,fields",
    EXPECTATIONS,
    ids=[f"{c}->{p} {m.upper()} {path}" for c, p, m, path, _, _ in EXPECTATIONS],
)
def test_a_provider_answers_with_every_field_its_consumer_reads(
    specs, consumer, provider, method, path, pointer, fields
):
    obj = _response_object(specs[provider], method, path, pointer)
    missing = fields - set(obj.get("properties", {}))
    assert not missing, (
        f"{provider} {method.upper()} {path} no longer returns {sorted(missing)} that {consumer} reads"
    )
    not_required = fields - set(obj.get("required", []))
    assert not not_required, f"{provider} may omit {sorted(not_required)} that {consumer} relies on"

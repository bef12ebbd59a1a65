"""HTTP contracts between services, checked against each provider's own OpenAPI document.

Responses (consumer-driven): each expectation is what a consumer's code reads from a provider's
answer; if a provider renames or drops one of these fields, this fails before a deploy does.

Requests: every call the gateway makes to a service is recorded by driving each public route of
the gateway (its own app, its own OpenAPI) against a stand-in for the services, and so is the
orders service's call to the catalog. Each call is then checked against the provider's OpenAPI:
the operation exists; every body field, query parameter and path parameter the consumer can send
is one the provider declares, with the same type and constraints no looser than the provider's
(a value the gateway accepts and the service refuses is a confusing upstream 422, a field the
service does not declare is silently ignored); every field the provider requires is one the
consumer always sends; and a ``PUT`` replaces, so a field the consumer may leave out of one must
not be quietly reset to a provider default. The consumer's side is read from the gateway's
OpenAPI; ``ROUTES`` only says where each public route goes and how its body and query get there.
"""

from __future__ import annotations

import json
import json as _json  # RecordingServices.request takes a parameter named json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import httpx
import pytest

from catalog.bootstrap import build_app as catalog_app
from gateway.adapters.security import JwtTokens
from gateway.bootstrap import create_app as gateway_app
from gateway.config import GatewaySettings
from gateway.domain.model import Role, User
from inventory.bootstrap import build_app as inventory_app
from notifications.bootstrap import build_app as notifications_app
from orders.adapters.catalog import HttpCatalog
from orders.bootstrap import build_app as orders_app
from payments.bootstrap import build_app as payments_app

PROVIDERS = {
    "catalog": catalog_app,
    "inventory": inventory_app,
    "orders": orders_app,
    "payments": payments_app,
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


@pytest.fixture(scope="module")
def gateway_spec() -> dict:
    return gateway_app(GatewaySettings(jwt_secret=SECRET)).openapi()


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


# ---------------------------------------------------------------------------- requests

# The public request's JSON body, or its declared query parameters, sent on unchanged.
RELAYED = "relayed"
# The client's raw query string, which the gateway does not declare: the service alone judges it.
PASSED_THROUGH = "passed through"
EVERY_SERVICE = tuple(PROVIDERS)


@dataclass(frozen=True)
class Call:
    """One request a consumer makes to a provider.

    ``provider`` may name a path parameter of the public route (``"{service}"``). ``body`` and
    ``query`` are None (nothing is sent), ``RELAYED``, ``PASSED_THROUGH`` (query only), or for what
    the consumer builds itself, the JSON Schema of each value it sends.
    """

    provider: str
    method: str
    path: str
    body: str | dict[str, Any] | None = None
    query: str | dict[str, dict[str, Any]] | None = None


# At most a page of product ids (the gateway's page_size and an order's lines are both at most 100):
# 100 UUIDs of 36 characters and 99 commas.
ID_LIST = {"type": "string", "maxLength": 100 * 36 + 99}

# Where each public route of the gateway goes. A new route must be added here (or to LOCAL).
ROUTES: dict[tuple[str, str], list[Call]] = {
    ("GET", "/api/v1/products"): [
        Call("catalog", "GET", "/products", query=RELAYED),
        Call("inventory", "GET", "/inventory", query={"ids": ID_LIST}),
    ],
    ("POST", "/api/v1/products"): [Call("catalog", "POST", "/products", body=RELAYED)],
    ("GET", "/api/v1/products/{product_id}"): [
        Call("catalog", "GET", "/products/{product_id}"),
        Call("inventory", "GET", "/inventory/{product_id}"),
    ],
    ("PUT", "/api/v1/products/{product_id}"): [
        Call("catalog", "PUT", "/products/{product_id}", body=RELAYED)
    ],
    ("PATCH", "/api/v1/products/{product_id}"): [
        Call("catalog", "PATCH", "/products/{product_id}", body=RELAYED)
    ],
    ("PUT", "/api/v1/inventory/{product_id}"): [
        Call("inventory", "PUT", "/inventory/{product_id}", body=RELAYED)
    ],
    ("GET", "/api/v1/inventory/{product_id}"): [Call("inventory", "GET", "/inventory/{product_id}")],
    ("POST", "/api/v1/orders"): [Call("orders", "POST", "/orders", body=RELAYED)],
    ("GET", "/api/v1/orders"): [Call("orders", "GET", "/orders", query=PASSED_THROUGH)],
    ("POST", "/api/v1/orders/{order_id}/cancel"): [Call("orders", "POST", "/orders/{order_id}/cancel")],
    ("GET", "/api/v1/orders/{order_id}"): [Call("orders", "GET", "/orders/{order_id}")],
    ("GET", "/api/v1/notifications"): [Call("notifications", "GET", "/notifications", query=PASSED_THROUGH)],
    ("GET", "/api/v1/admin/dead-letters"): [Call(s, "GET", "/admin/dead-letters") for s in EVERY_SERVICE],
    ("POST", "/api/v1/admin/dead-letters/replay"): [
        Call(s, "POST", "/admin/dead-letters/replay") for s in EVERY_SERVICE
    ],
    ("POST", "/api/v1/admin/dead-letters/{service}/{letter_id}/replay"): [
        Call("{service}", "POST", "/admin/dead-letters/{letter_id}/replay")
    ],
    ("GET", "/api/v1/admin/outbox"): [Call(s, "GET", "/admin/outbox") for s in EVERY_SERVICE],
}
LOCAL = {("POST", "/api/v1/auth/register"), ("POST", "/api/v1/auth/login"), ("GET", "/api/v1/auth/me")}

# orders.adapters.catalog.HttpCatalog.prices: the catalog is asked for a page of products by id.
ORDERS_CALLS = [
    Call(
        "catalog",
        "GET",
        "/products",
        query={"ids": ID_LIST, "page_size": {"type": "integer", "minimum": 100, "maximum": 100}},
    )
]

SECRET = "contract-test-secret-that-is-long-enough-for-hs256"
_PRODUCT = str(uuid4())
# One answer that every route can read: a product, a page of products, a stock level.
_STOCKED_PRODUCT = {"id": _PRODUCT, "product_id": _PRODUCT, "available": 1}
_ANY_ANSWER = {**_STOCKED_PRODUCT, "items": [_STOCKED_PRODUCT]}


@dataclass(frozen=True)
class Sent:
    provider: str
    method: str
    path: str
    query: dict[str, Any]
    body: Any


@dataclass(frozen=True)
class PublicRequest:
    method: str
    path: str  # the public template
    url: str
    path_params: dict[str, Any]
    query: dict[str, Any]
    body: Any


@dataclass
class RecordingServices:
    """Stands in for ``Upstreams``: records each call by service name, answers ``_ANY_ANSWER``."""

    sent: list[Sent] = field(default_factory=list)

    async def request(
        self,
        service: str,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        content: bytes | None = None,  # a client's JSON body relayed as it came
        headers: Any = None,
        **options: Any,  # timeout, retry: how to call, not what is sent
    ) -> httpx.Response:
        query = dict(params.items() if isinstance(params, dict) else params or [])
        body = json if content is None else _json.loads(content)
        self.sent.append(Sent(service, method, path, query, body))
        return httpx.Response(200, json=_ANY_ANSWER)

    async def ready(self, timeout: float) -> dict[str, bool]:
        return {}

    async def aclose(self) -> None:
        pass


class _NoUsers:
    """The gateway's user store, never used: no route under test reads it."""

    def uow(self) -> Any:
        raise AssertionError("the contract test calls no route that needs the user store")

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        pass


def _sample(schema: dict, spec: dict) -> Any:
    """A value with every property filled in: the most the consumer can send."""
    schema = _resolve(schema, spec)
    if "anyOf" in schema:
        return _sample(next(b for b in schema["anyOf"] if b.get("type") != "null"), spec)
    if "examples" in schema:
        return schema["examples"][0]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {name: _sample(prop, spec) for name, prop in schema.get("properties", {}).items()}
    if kind == "array":
        return [_sample(schema["items"], spec) for _ in range(max(schema.get("minItems", 1), 1))]
    if kind == "integer":
        return int(max(schema.get("minimum", 1), 1))
    if kind == "string":
        if schema.get("format") == "uuid":
            return str(uuid4())
        assert "pattern" not in schema, (
            f"give a patterned field examples=[...] so it can be sampled: {schema}"
        )
        return "x" * max(schema.get("minLength", 1), 1)
    raise AssertionError(f"cannot sample {schema}")


def _public_requests(gateway_spec: dict, method: str, path: str) -> list[PublicRequest]:
    """The fullest request for a public route; one per value of an enumerated path parameter."""
    operation = gateway_spec["paths"][path][method.lower()]
    parameters = operation.get("parameters", [])
    query = {p["name"]: _sample(p["schema"], gateway_spec) for p in parameters if p["in"] == "query"}
    body = None
    if "requestBody" in operation:
        body = _sample(operation["requestBody"]["content"]["application/json"]["schema"], gateway_spec)
    variants: list[dict[str, Any]] = [{}]
    for p in (p for p in parameters if p["in"] == "path"):
        schema = _resolve(p["schema"], gateway_spec)
        values = schema.get("enum") or [_sample(schema, gateway_spec)]
        variants = [{**v, p["name"]: value} for v in variants for value in values]
    return [PublicRequest(method, path, path.format(**params), params, query, body) for params in variants]


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[httpx.AsyncClient, RecordingServices, dict[str, str]]]:
    settings = GatewaySettings(jwt_secret=SECRET)
    app = gateway_app(settings, store=_NoUsers())
    tokens = JwtTokens(secret=SECRET, ttl_seconds=600, issuer=settings.jwt_issuer)
    admin = User(
        id=uuid4(),
        email="admin@example.com",
        name="Admin",
        role=Role.ADMIN,
        password_hash="unused",
        created_at=datetime.now(UTC),
    )
    recorder = RecordingServices()
    async with app.router.lifespan_context(app):
        app.state.upstreams = recorder
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client, recorder, {"Authorization": f"Bearer {tokens.issue(admin).access_token}"}


def _template(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")


def _provider(call: Call, public: PublicRequest | None) -> str:
    if call.provider.startswith("{"):
        assert public is not None
        return str(public.path_params[call.provider.strip("{}")])
    return call.provider


def _mismatch(call: Call, sent: Sent, public: PublicRequest | None) -> str | None:
    """Why ``sent`` is not ``call`` (None when it is)."""
    if (sent.provider, sent.method, _template(call.path).match(sent.path) is not None) != (
        _provider(call, public),
        call.method,
        True,
    ):
        return "a different operation"
    if call.body is None and sent.body is not None:
        return f"a body {sent.body!r} the contract does not declare"
    if call.body == RELAYED and (public is None or sent.body != public.body):
        return f"the body {sent.body!r}, not the public request's body unchanged"
    if isinstance(call.body, dict) and (not isinstance(sent.body, dict) or set(sent.body) - set(call.body)):
        return f"the body {sent.body!r}, not the declared fields {sorted(call.body)}"
    if call.query is None and sent.query:
        return f"query parameters {sent.query!r} the contract does not declare"
    if call.query == RELAYED and (
        public is None or any(public.query.get(k) != v for k, v in sent.query.items())
    ):
        return f"the query {sent.query!r}, not the public request's parameters"
    if isinstance(call.query, dict) and set(sent.query) - set(call.query):
        return f"query parameters {sorted(set(sent.query) - set(call.query))} the contract does not declare"
    return None


def test_every_public_route_of_the_gateway_says_where_it_goes(gateway_spec):
    public = {
        (m.upper(), p) for p, ops in gateway_spec["paths"].items() for m in ops if p.startswith("/api/")
    }
    assert public - LOCAL - set(ROUTES) == set(), "add the route's upstream calls to ROUTES (or LOCAL)"
    assert set(ROUTES) | LOCAL <= public, "ROUTES or LOCAL names a route the gateway no longer has"


@pytest.mark.parametrize("route", list(ROUTES), ids=[f"{m} {p}" for m, p in ROUTES])
async def test_a_public_route_makes_exactly_the_calls_its_contract_declares(gateway, gateway_spec, route):
    client, recorder, as_admin = gateway
    for public in _public_requests(gateway_spec, *route):
        recorder.sent.clear()
        response = await client.request(
            public.method, public.url, params=public.query, json=public.body, headers=as_admin
        )
        assert response.status_code < 400, (public, response.text)
        expected = list(ROUTES[route])
        for sent in recorder.sent:
            reasons = [_mismatch(call, sent, public) for call in expected]
            assert None in reasons, f"{route} sent {sent}, undeclared: {reasons}"
            expected.pop(reasons.index(None))
        assert not expected, f"{route} did not make the declared calls {expected}"


async def test_orders_asks_the_catalog_exactly_what_its_contract_declares():
    sent: list[Sent] = []

    def answer(request: httpx.Request) -> httpx.Response:
        query = dict(request.url.params.items())
        sent.append(Sent("catalog", request.method, request.url.path, query, request.content or None))
        return httpx.Response(200, json={"items": [], "total": 0, "page": 1, "page_size": 100})

    catalog = HttpCatalog("http://catalog")
    # The adapter builds its client in start(); this one is the same with a recording transport.
    catalog._client = httpx.AsyncClient(base_url="http://catalog", transport=httpx.MockTransport(answer))
    await catalog.prices([uuid4(), uuid4()])
    await catalog.stop()

    assert len(sent) == len(ORDERS_CALLS)
    for call, one in zip(ORDERS_CALLS, sent, strict=True):
        assert _mismatch(call, one, None) is None, (call, one)
        assert set(one.query) == set(call.query or {}), "orders sends every declared query parameter"


# -- comparing what a consumer sends with what a provider accepts


_NARROWER_WHEN_HIGHER = ("minimum", "exclusiveMinimum", "minLength", "minItems")
_NARROWER_WHEN_LOWER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems")


def _nullable(schema: dict, spec: dict) -> tuple[dict, bool]:
    """(the schema without its ``null`` branch, whether ``null`` is allowed)."""
    schema = _resolve(schema, spec)
    if "anyOf" not in schema:
        return schema, schema.get("type") == "null"
    branches = [b for b in schema["anyOf"] if b.get("type") != "null"]
    assert len(branches) == 1, f"compare this union by hand: {schema}"
    outer = {k: v for k, v in schema.items() if k != "anyOf"}
    return {**_resolve(branches[0], spec), **outer}, len(branches) < len(schema["anyOf"])


def _narrower(sent: dict, spec_s: dict, accepted: dict, spec_a: dict, where: str) -> list[str]:
    """Every way a value valid for ``sent`` could be refused by ``accepted``."""
    s, s_null = _nullable(sent, spec_s)
    a, a_null = _nullable(accepted, spec_a)
    problems = []
    # A query string cannot carry null: an optional parameter left as None is simply not sent.
    if s_null and not a_null and not where.startswith("query."):
        problems.append(f"{where}: may be null, which the provider refuses")
    if s.get("type") != a.get("type") and not (s.get("type") == "integer" and a.get("type") == "number"):
        problems.append(f"{where}: is {s.get('type')}, the provider takes {a.get('type')}")
        return problems
    if "format" in a and s.get("format") != a["format"]:
        problems.append(f"{where}: format {s.get('format')!r}, the provider takes {a['format']!r}")
    for key in _NARROWER_WHEN_HIGHER:
        if key in a and s.get(key, float("-inf")) < a[key]:
            problems.append(f"{where}: {key} {s.get(key)} is looser than the provider's {a[key]}")
    for key in _NARROWER_WHEN_LOWER:
        if key in a and s.get(key, float("inf")) > a[key]:
            problems.append(f"{where}: {key} {s.get(key)} is looser than the provider's {a[key]}")
    if "pattern" in a and s.get("pattern") != a["pattern"]:
        problems.append(f"{where}: pattern {s.get('pattern')!r}, the provider's is {a['pattern']!r}")
    if "enum" in a and not set(s.get("enum", [object()])) <= set(a["enum"]):
        problems.append(f"{where}: allows {s.get('enum', 'any value')}, the provider only {a['enum']}")
    if "default" in s and "default" in a and s["default"] != a["default"]:
        problems.append(
            f"{where}: documents the default {s['default']!r}, the provider's is {a['default']!r}"
        )
    if a.get("type") == "array":
        problems += _narrower(s.get("items", {}), spec_s, a.get("items", {}), spec_a, f"{where}[]")
    if a.get("type") == "object":
        problems += _fields(s, spec_s, a, spec_a, where)
    return problems


def _fields(s: dict, spec_s: dict, a: dict, spec_a: dict, where: str) -> list[str]:
    problems = []
    accepted = a.get("properties", {})
    for name, prop in s.get("properties", {}).items():
        if name not in accepted:
            problems.append(f"{where}.{name}: the provider does not declare it (it would be ignored)")
        else:
            problems += _narrower(prop, spec_s, accepted[name], spec_a, f"{where}.{name}")
    for name in sorted(set(a.get("required", [])) - set(s.get("required", []))):
        problems.append(f"{where}.{name}: the provider requires it and the consumer may leave it out")
    return problems


def _replaced_by_default(s: dict, spec_s: dict, a: dict, spec_a: dict) -> list[str]:
    """A PUT replaces the resource: a field left out must be refused, never reset to a default."""
    s, a = _resolve(s, spec_s), _resolve(a, spec_a)
    optional = set(a.get("properties", {})) - set(a.get("required", [])) - set(s.get("required", []))
    return [
        f"body.{name}: a PUT that leaves it out resets it to "
        f"{json.dumps(_resolve(a['properties'][name], spec_a).get('default'))}; "
        "require it on both sides, or update partially with PATCH"
        for name in sorted(optional)
    ]


def _parameters(operation: dict, where: str) -> dict[str, dict]:
    return {p["name"]: p for p in operation.get("parameters", []) if p["in"] == where}


def _request_problems(
    call: Call, public: tuple[str, str] | None, gateway_spec: dict, specs: dict
) -> list[str]:
    providers = [call.provider]
    public_op = None
    if public is not None:
        public_op = gateway_spec["paths"][public[1]][public[0].lower()]
        if call.provider.startswith("{"):
            schema = _parameters(public_op, "path")[call.provider.strip("{}")]["schema"]
            providers = _resolve(schema, gateway_spec)["enum"]
    problems = []
    for provider in providers:
        spec = specs[provider]
        operation = spec["paths"].get(call.path, {}).get(call.method.lower())
        if operation is None:
            problems.append(f"{provider} has no {call.method} {call.path}")
            continue
        problems += [
            f"{provider} {call.method} {call.path} {p}"
            for p in _operation_problems(call, public_op, gateway_spec, operation, spec)
        ]
    return problems


def _operation_problems(
    call: Call, public_op: dict | None, gspec: dict, operation: dict, spec: dict
) -> list[str]:
    problems = []
    # path parameters: what the public route let through, against what the provider takes
    public_path = _parameters(public_op or {}, "path")
    for name, param in _parameters(operation, "path").items():
        if name in public_path:
            problems += _narrower(public_path[name]["schema"], gspec, param["schema"], spec, f"path.{name}")
    # query parameters
    accepted = _parameters(operation, "query")
    if call.query == RELAYED:
        assert public_op is not None
        sent = {
            n: (p["schema"], p.get("required", False)) for n, p in _parameters(public_op, "query").items()
        }
        sent_spec = gspec
    elif isinstance(call.query, dict):
        sent, sent_spec = {n: (schema, True) for n, schema in call.query.items()}, spec
    else:
        sent, sent_spec = {}, spec
    for name, (schema, _) in sent.items():
        if name not in accepted:
            problems.append(f"query.{name}: the provider does not declare it (it would be ignored)")
        else:
            problems += _narrower(schema, sent_spec, accepted[name]["schema"], spec, f"query.{name}")
    if call.query != PASSED_THROUGH:
        for name, param in accepted.items():
            if param.get("required") and not sent.get(name, (None, False))[1]:
                problems.append(f"query.{name}: the provider requires it and the consumer may leave it out")
    # body
    body = operation.get("requestBody")
    if call.body is None:
        if body is not None and body.get("required"):
            problems.append("body: the provider requires one and the consumer sends none")
        return problems
    if body is None:
        return [*problems, "body: the consumer sends one and the provider takes none"]
    accepted_body = body["content"]["application/json"]["schema"]
    if call.body == RELAYED:
        assert public_op is not None
        sent_body, sent_spec = public_op["requestBody"]["content"]["application/json"]["schema"], gspec
    else:
        assert isinstance(call.body, dict)
        sent_body, sent_spec = {"type": "object", "properties": call.body, "required": list(call.body)}, spec
    problems += _narrower(sent_body, sent_spec, accepted_body, spec, "body")
    if call.method == "PUT":
        problems += _replaced_by_default(sent_body, sent_spec, accepted_body, spec)
    return problems


REQUESTS = [("gateway", route, call) for route, calls in ROUTES.items() for call in calls] + [
    ("orders", None, call) for call in ORDERS_CALLS
]


@pytest.mark.parametrize(
    "consumer,route,call",
    REQUESTS,
    ids=[f"{c}->{call.provider} {call.method} {call.path}" for c, _, call in REQUESTS],
)
def test_a_provider_accepts_everything_its_consumer_may_send(specs, gateway_spec, consumer, route, call):
    problems = _request_problems(call, route, gateway_spec, specs)
    via = f" (for {route[0]} {route[1]})" if route else ""
    assert not problems, f"{consumer} -> {call.method} {call.path}{via}:\n  " + "\n  ".join(problems)

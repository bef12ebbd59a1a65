"""The public API (``/api/v1``). Routes check who is calling, validate, and hand over:
auth to the message bus, everything else to the service that owns it.

Identity reaches the services only as ``X-User-Id``, ``X-User-Email`` and ``X-User-Role``
headers written here from a verified token. Outgoing headers are built from scratch, so any
such header a client sends is dropped.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, cast
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from emporium_kit.problems import problem
from gateway.adapters.upstream import UpstreamResponse, Upstreams, UpstreamUnavailable
from gateway.domain.commands import LogIn, RegisterUser
from gateway.domain.model import Principal, Role
from gateway.entrypoints import schemas
from gateway.service_layer.messagebus import MessageBus
from gateway.service_layer.ports import TokenIssuer

router = APIRouter(prefix="/api/v1")


class UpstreamBadResponse(Exception):
    """A service answered something the gateway cannot relay (5xx, or not JSON): 502."""

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"the {service} service gave an unusable answer ({reason})")
        self.service = service


class NotAuthenticated(Exception):
    """No bearer token on a protected route: 401 with ``WWW-Authenticate: Bearer``."""


# ---------------------------------------------------------------------------- dependencies


# Dependencies are ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread,
# which cost the gateway ~14 % of its CPU under load (bench/results/profile).
async def _bus(request: Request) -> MessageBus:
    return cast(MessageBus, request.app.state.bus)


async def _upstreams(request: Request) -> Upstreams:
    return cast(Upstreams, request.app.state.upstreams)


async def _tokens(request: Request) -> TokenIssuer:
    return cast(TokenIssuer, request.app.state.tokens)


Bus = Annotated[MessageBus, Depends(_bus)]
Services = Annotated[Upstreams, Depends(_upstreams)]

_bearer = HTTPBearer(auto_error=False, description="Access token from POST /api/v1/auth/login")


async def _principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    tokens: Annotated[TokenIssuer, Depends(_tokens)],
) -> Principal:
    if credentials is None:
        raise NotAuthenticated("this route needs an access token: Authorization: Bearer <token>")
    return tokens.decode(credentials.credentials)  # raises InvalidToken -> 401


def _requires(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        if principal.role not in roles:
            raise HTTPException(403, f"this route needs the {' or '.join(r.value for r in roles)} role")
        return principal

    return check


Caller = Annotated[Principal, Depends(_principal)]
Admin = Annotated[Principal, Depends(_requires(Role.ADMIN))]
Shopper = Annotated[Principal, Depends(_requires(Role.CUSTOMER, Role.ADMIN))]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)]


# ---------------------------------------------------------------------------- relaying


def _headers(principal: Principal | None = None, idempotency_key: str | None = None) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if principal is not None:
        headers["X-User-Id"] = str(principal.user_id)
        headers["X-User-Email"] = principal.email
        headers["X-User-Role"] = principal.role.value
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return headers


_RELAYED_HEADERS = ("location", "retry-after", "etag", "idempotent-replayed")


def _relay(response: UpstreamResponse, service: str) -> Response:
    """Pass a service's status and JSON body through (its errors are already problem+json)."""
    status = response.status_code
    if status >= 500 and status != 503:
        raise UpstreamBadResponse(service, f"status {status}")
    headers = {k: response.headers[k] for k in _RELAYED_HEADERS if k in response.headers}
    if status == 503:
        headers.setdefault("retry-after", "5")
    if status == 204 or not response.content:
        if status == 503:
            return problem(503, f"the {service} service is not available", headers=headers)
        return Response(status_code=status, headers=headers)
    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if not media_type.endswith("json"):
        if status >= 400:
            return problem(status, f"the {service} service answered {status}", headers=headers)
        raise UpstreamBadResponse(service, f"content type {media_type or 'missing'}")
    return Response(content=response.content, status_code=status, media_type=media_type, headers=headers)


def _json(response: UpstreamResponse, service: str) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UpstreamBadResponse(service, "body is not JSON") from None


# Set on an answer served without one of the services it usually draws on.
_DEGRADED = {"X-Emporium-Degraded": "inventory"}


def _is_ok(response: UpstreamResponse) -> bool:
    return 200 <= response.status_code < 300


async def _availability(services: Services, product_ids: list[str]) -> dict[str, int]:
    if not product_ids:
        return {}
    response = await services.request(
        "inventory", "GET", "/inventory", params={"ids": ",".join(product_ids)}, headers=_headers()
    )
    if not _is_ok(response):
        if response.status_code == 503:
            raise UpstreamUnavailable("inventory", "not ready")
        raise UpstreamBadResponse("inventory", f"status {response.status_code} for a stock lookup")
    body = _json(response, "inventory")
    levels: dict[str, int] = {}
    for level in body.get("items", []) if isinstance(body, dict) else []:
        try:
            levels[str(UUID(str(level["product_id"])))] = int(level["available"])
        except (KeyError, TypeError, ValueError):
            raise UpstreamBadResponse("inventory", "malformed stock level") from None
    return levels


def _product_key(product: dict[str, Any]) -> str | None:
    try:
        return str(UUID(str(product["id"])))
    except (KeyError, ValueError):
        return None


# ---------------------------------------------------------------------------- auth


@router.post("/auth/register", status_code=201, response_model=schemas.UserOut, tags=["auth"])
async def register(body: schemas.RegisterRequest, bus: Bus) -> schemas.UserOut:
    user = await bus.handle(
        RegisterUser(user_id=uuid4(), email=body.email, password=body.password, name=body.name)
    )
    return schemas.UserOut(id=user.id, email=user.email, name=user.name, role=user.role)


@router.post("/auth/login", response_model=schemas.TokenOut, tags=["auth"])
async def login(body: schemas.LoginRequest, bus: Bus) -> schemas.TokenOut:
    token = await bus.handle(LogIn(email=body.email, password=body.password))
    return schemas.TokenOut(
        access_token=token.access_token, token_type=token.token_type, expires_in=token.expires_in
    )


@router.get("/auth/me", response_model=schemas.MeOut, tags=["auth"])
async def me(caller: Caller) -> schemas.MeOut:
    return schemas.MeOut(id=caller.user_id, email=caller.email, role=caller.role)


# ---------------------------------------------------------------------------- catalog + stock


@router.get("/products", tags=["products"])
async def list_products(
    services: Services,
    q: Annotated[str | None, Query(max_length=200)] = None,
    page: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    page_size: Annotated[int | None, Query(ge=1, le=100)] = None,
) -> Response:
    params = {k: v for k, v in {"q": q, "page": page, "page_size": page_size}.items() if v is not None}
    response = await services.request("catalog", "GET", "/products", params=params, headers=_headers())
    if not _is_ok(response):
        return _relay(response, "catalog")
    body = _json(response, "catalog")
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise UpstreamBadResponse("catalog", "product page without items")
    products = [p for p in body["items"] if isinstance(p, dict)]
    keys = [k for k in (_product_key(p) for p in products) if k is not None]
    try:
        levels: dict[str, int] | None = await _availability(services, list(dict.fromkeys(keys)))
    except UpstreamUnavailable:
        levels = None  # browsing outlives an inventory outage: stock shows as unknown
    for product in products:
        product["available"] = None if levels is None else levels.get(_product_key(product) or "", 0)
    return JSONResponse(body, headers=_DEGRADED if levels is None else None)


@router.get("/products/{product_id}", tags=["products"])
async def get_product(product_id: UUID, services: Services) -> Response:
    product_call, stock_call = await asyncio.gather(
        services.request("catalog", "GET", f"/products/{product_id}", headers=_headers()),
        services.request("inventory", "GET", f"/inventory/{product_id}", headers=_headers()),
        return_exceptions=True,
    )
    if isinstance(product_call, BaseException):
        raise product_call
    if not _is_ok(product_call):
        return _relay(product_call, "catalog")
    product = _json(product_call, "catalog")
    if not isinstance(product, dict):
        raise UpstreamBadResponse("catalog", "product is not an object")
    if isinstance(stock_call, UpstreamUnavailable) or (
        not isinstance(stock_call, BaseException) and stock_call.status_code == 503
    ):
        product["available"] = None  # the product page outlives an inventory outage
        return JSONResponse(product, headers=_DEGRADED)
    if isinstance(stock_call, BaseException):
        raise stock_call
    if stock_call.status_code == 404:
        product["available"] = 0
    elif _is_ok(stock_call):
        level = _json(stock_call, "inventory")
        try:
            product["available"] = int(level["available"])
        except (KeyError, TypeError, ValueError):
            raise UpstreamBadResponse("inventory", "malformed stock level") from None
    else:
        return _relay(stock_call, "inventory")
    return JSONResponse(product)


@router.post("/products", status_code=201, tags=["products"])
async def create_product(
    body: schemas.ProductCreate, services: Services, admin: Admin, idempotency_key: IdempotencyKey = None
) -> Response:
    response = await services.request(
        "catalog",
        "POST",
        "/products",
        json=body.model_dump(mode="json", exclude_unset=True),
        headers=_headers(admin, idempotency_key),
    )
    return _relay(response, "catalog")


@router.put("/products/{product_id}", tags=["products"])
async def replace_product(
    product_id: UUID,
    body: schemas.ProductReplacement,
    services: Services,
    admin: Admin,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Replace a product's editable fields: every one is required; to change some, use PATCH."""
    return await _update_product("PUT", product_id, body, services, admin, idempotency_key)


@router.patch("/products/{product_id}", tags=["products"])
async def patch_product(
    product_id: UUID,
    body: schemas.ProductPatch,
    services: Services,
    admin: Admin,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """JSON merge patch (``application/json`` or ``application/merge-patch+json``): the fields
    named change, the rest keep their values; ``null`` clears ``category`` and is refused for the
    other fields."""
    return await _update_product("PATCH", product_id, body, services, admin, idempotency_key)


async def _update_product(
    method: str,
    product_id: UUID,
    body: schemas.ProductReplacement | schemas.ProductPatch,
    services: Upstreams,
    admin: Principal,
    idempotency_key: str | None,
) -> Response:
    response = await services.request(
        "catalog",
        method,
        f"/products/{product_id}",
        json=body.model_dump(mode="json", exclude_unset=True),  # an explicit null stays: it clears
        headers=_headers(admin, idempotency_key),
    )
    return _relay(response, "catalog")


@router.put("/inventory/{product_id}", tags=["inventory"])
async def set_stock(
    product_id: UUID,
    body: schemas.StockLevel,
    services: Services,
    admin: Admin,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    response = await services.request(
        "inventory",
        "PUT",
        f"/inventory/{product_id}",
        json=body.model_dump(mode="json", exclude_unset=True),
        headers=_headers(admin, idempotency_key),
    )
    return _relay(response, "inventory")


@router.get("/inventory/{product_id}", tags=["inventory"])
async def get_stock(product_id: UUID, services: Services) -> Response:
    response = await services.request("inventory", "GET", f"/inventory/{product_id}", headers=_headers())
    return _relay(response, "inventory")


# ---------------------------------------------------------------------------- orders + notifications


@router.post("/orders", status_code=202, tags=["orders"])
async def place_order(
    request: Request,
    body: schemas.PlaceOrderRequest,
    services: Services,
    caller: Shopper,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """``body`` is validated here (a bad order is a 422 at the door) and then relayed as the
    client's own bytes: the gateway changes nothing in it, so it is not serialised again."""
    del body
    response = await services.request(
        "orders",
        "POST",
        "/orders",
        content=await request.body(),  # read and kept by FastAPI to validate it
        headers=_headers(caller, idempotency_key),
    )
    return _relay(response, "orders")


@router.post("/orders/{order_id}/cancel", tags=["orders"])
async def cancel_order(
    order_id: UUID, services: Services, caller: Caller, idempotency_key: IdempotencyKey = None
) -> Response:
    """The owner or an admin cancels; a confirmed order is refunded and its stock returned."""
    response = await services.request(
        "orders", "POST", f"/orders/{order_id}/cancel", headers=_headers(caller, idempotency_key)
    )
    return _relay(response, "orders")


@router.get("/orders/{order_id}", tags=["orders"])
async def get_order(order_id: UUID, services: Services, caller: Caller) -> Response:
    # The orders service answers 404 for someone else's order (unless the caller is an admin).
    response = await services.request("orders", "GET", f"/orders/{order_id}", headers=_headers(caller))
    return _relay(response, "orders")


@router.get("/orders", tags=["orders"])
async def list_orders(request: Request, services: Services, caller: Caller) -> Response:
    response = await services.request(
        "orders", "GET", "/orders", params=request.query_params.multi_items(), headers=_headers(caller)
    )
    return _relay(response, "orders")


@router.get("/notifications", tags=["notifications"])
async def list_notifications(request: Request, services: Services, caller: Caller) -> Response:
    response = await services.request(
        "notifications",
        "GET",
        "/notifications",
        params=request.query_params.multi_items(),
        headers=_headers(caller),
    )
    return _relay(response, "notifications")


# ---------------------------------------------------------------------------- operators (admin)

MESSAGING_SERVICES = ("catalog", "inventory", "orders", "payments", "notifications")
ServiceName = Literal["catalog", "inventory", "orders", "payments", "notifications"]


async def _each_service(services: Upstreams, method: str, path: str, caller: Principal) -> dict[str, Any]:
    """Ask every service at once; a service that cannot answer is reported, not fatal."""

    async def ask(name: str) -> Any:
        try:
            response = await services.request(name, method, path, headers=_headers(caller))
        except UpstreamUnavailable as exc:
            return {"error": str(exc)}
        if response.status_code >= 400:
            return {"error": f"{name} answered {response.status_code}"}
        try:
            return response.json()
        except ValueError:
            return {"error": f"{name} answered something that is not JSON"}

    answers = await asyncio.gather(*(ask(name) for name in MESSAGING_SERVICES))
    return dict(zip(MESSAGING_SERVICES, answers, strict=True))


@router.get("/admin/dead-letters", tags=["admin"])
async def list_dead_letters(services: Services, caller: Admin) -> dict[str, Any]:
    """Every service's unreplayed dead letters: ``{service: [letter] | {error}}``."""
    return await _each_service(services, "GET", "/admin/dead-letters", caller)


@router.post("/admin/dead-letters/replay", tags=["admin"])
async def replay_all_dead_letters(services: Services, caller: Admin) -> dict[str, Any]:
    return await _each_service(services, "POST", "/admin/dead-letters/replay", caller)


@router.post("/admin/dead-letters/{service}/{letter_id}/replay", tags=["admin"])
async def replay_dead_letter(
    service: ServiceName, letter_id: int, services: Services, caller: Admin
) -> Response:
    response = await services.request(
        service, "POST", f"/admin/dead-letters/{letter_id}/replay", headers=_headers(caller)
    )
    return _relay(response, service)


@router.get("/admin/outbox", tags=["admin"])
async def outbox_backlog(services: Services, caller: Admin) -> dict[str, Any]:
    """Per service: unsent outbox rows and the age of the oldest."""
    return await _each_service(services, "GET", "/admin/outbox", caller)

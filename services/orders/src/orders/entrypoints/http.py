"""Orders HTTP API (behind the gateway, which authenticates and sends the caller's identity)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from emporium_events import correlation
from emporium_kit.edge import Caller, CallerDep, bus, runtime
from orders.adapters import views
from orders.adapters.metrics import SagaMetrics
from orders.domain.commands import CancelOrder, IdempotencyKey, PlaceOrder, RequestedLine
from orders.domain.model import Order, OrderNotFound
from orders.service_layer import handlers

router = APIRouter()


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    product_id: UUID
    quantity: int = Field(ge=1, le=1000)


class PlaceOrderIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    items: list[ItemIn] = Field(min_length=1, max_length=100)
    payment_token: str = Field(min_length=1, max_length=200)


class ItemOut(BaseModel):
    product_id: UUID
    sku: str
    name: str
    quantity: int
    unit_price_cents: int
    total_cents: int


class HistoryOut(BaseModel):
    status: str
    at: datetime
    note: str | None = None


class OrderOut(BaseModel):
    id: UUID
    customer_id: UUID
    status: str
    items: list[ItemOut]
    total_cents: int
    currency: str
    cancel_reason: str | None
    created_at: datetime
    updated_at: datetime
    deadline_at: datetime | None = None
    history: list[HistoryOut]
    trace_id: str | None = Field(
        default=None,
        description="The order's trace (32 hex digits), to look up in Jaeger; null if it was not traced",
    )


IdempotencyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Repeat a request safely: the same key and body return the first answer",
    ),
]


def render(order: Order) -> dict[str, Any]:
    """The API's view of an order, from the aggregate (also stored as an idempotent answer)."""
    return OrderOut(
        id=order.id,
        customer_id=order.customer_id,
        status=order.status.value,
        items=[
            ItemOut(
                product_id=li.product_id,
                sku=li.sku,
                name=li.name,
                quantity=li.quantity,
                unit_price_cents=li.unit_price_cents,
                total_cents=li.total_cents,
            )
            for li in order.lines
        ],
        total_cents=order.total_cents,
        currency=order.currency,
        cancel_reason=order.cancel_reason,
        created_at=order.created_at,
        updated_at=order.updated_at,
        deadline_at=order.deadline_at,
        history=[HistoryOut(status=h.status, at=h.at, note=h.note) for h in order.history],
    ).model_dump(mode="json")


def _idempotency(key: str | None, request: Request, body: BaseModel | None) -> IdempotencyKey | None:
    if key is None:
        return None
    canonical = json.dumps(body.model_dump(mode="json") if body else None, sort_keys=True)
    digest = hashlib.sha256(f"{request.method} {request.url.path} {canonical}".encode()).hexdigest()
    return IdempotencyKey(key=key, request_hash=digest)


def _send(answer: handlers.Answer) -> JSONResponse:
    headers = None
    if answer.replayed:
        headers = {"Idempotent-Replayed": "true"}
        SagaMetrics.for_registry().idempotent_replays.inc()
    return JSONResponse(answer.body, status_code=answer.status_code, headers=headers)


@router.post("/orders", status_code=202, response_model=OrderOut)
async def place_order(
    body: PlaceOrderIn, request: Request, who: CallerDep, idempotency_key: IdempotencyHeader = None
) -> JSONResponse:
    order_id = uuid4()
    correlation.order_id.set(str(order_id))  # this request's log lines name the order
    cmd = PlaceOrder(
        order_id=order_id,
        customer_id=who.id,
        customer_email=who.email,
        lines=tuple(RequestedLine(product_id=i.product_id, quantity=i.quantity) for i in body.items),
        payment_token=body.payment_token,
        idempotency=_idempotency(idempotency_key, request, body),
    )
    return _send(await bus(request).handle(cmd))


@router.post("/orders/{order_id}/cancel", response_model=OrderOut)
async def cancel_order(
    order_id: UUID, request: Request, who: CallerDep, idempotency_key: IdempotencyHeader = None
) -> JSONResponse:
    cmd = CancelOrder(
        order_id=order_id,
        requested_by=who.id,
        by_admin=who.is_admin,
        idempotency=_idempotency(idempotency_key, request, None),
    )
    return _send(await bus(request).handle(cmd))


@router.get("/orders/{order_id}", response_model=OrderOut)
async def get_order(order_id: UUID, request: Request, who: CallerDep) -> OrderOut:
    return await _one(request, order_id, who)


@router.get("/orders", response_model=list[OrderOut])
async def list_orders(
    request: Request,
    who: CallerDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[OrderOut]:
    sessions = runtime(request).session_factory
    ids = await views.customer_order_ids(sessions, customer_id=who.id, limit=limit, offset=offset)
    return [OrderOut(**o) for o in await views.order_details(sessions, order_ids=ids)]


async def _one(request: Request, order_id: UUID, who: Caller) -> OrderOut:
    found = await views.order_details(runtime(request).session_factory, order_ids=[order_id])
    # Another customer's order is answered exactly like a missing one: its existence is not leaked.
    if not found or (found[0]["customer_id"] != who.id and not who.is_admin):
        raise OrderNotFound(order_id)
    return OrderOut(**found[0])

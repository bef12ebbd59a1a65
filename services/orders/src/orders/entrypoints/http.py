"""Orders HTTP API (behind the gateway, which authenticates and sends the caller's identity)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from emporium_kit.runtime import Runtime
from orders.adapters import views
from orders.domain.commands import PlaceOrder, RequestedLine
from orders.domain.model import OrderNotFound
from orders.service_layer import handlers

router = APIRouter()


class Caller(BaseModel):
    id: UUID
    email: str | None
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def caller(
    x_user_id: Annotated[str | None, Header()] = None,
    x_user_email: Annotated[str | None, Header()] = None,
    x_user_role: Annotated[str, Header()] = "customer",
) -> Caller:
    if not x_user_id:
        raise HTTPException(401, "no caller identity (X-User-Id); call through the gateway")
    try:
        return Caller(id=UUID(x_user_id), email=x_user_email, role=x_user_role)
    except ValueError as exc:
        raise HTTPException(401, "X-User-Id is not a UUID") from exc


CallerDep = Annotated[Caller, Depends(caller)]


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
    history: list[HistoryOut]


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


@router.post("/orders", status_code=202, response_model=OrderOut)
async def place_order(body: PlaceOrderIn, request: Request, who: CallerDep) -> OrderOut:
    order_id = uuid4()
    cmd = PlaceOrder(
        order_id=order_id, customer_id=who.id, customer_email=who.email,
        lines=tuple(RequestedLine(product_id=i.product_id, quantity=i.quantity) for i in body.items),
        payment_token=body.payment_token,
    )
    async with _runtime(request).uow() as uow:
        await handlers.place_order(cmd, uow, request.app.state.catalog)
    return await _one(request, order_id, who)


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
    sessions = _runtime(request).session_factory
    ids = await views.customer_order_ids(sessions, customer_id=who.id, limit=limit, offset=offset)
    return [OrderOut(**o) for o in await views.order_details(sessions, order_ids=ids)]


async def _one(request: Request, order_id: UUID, who: Caller) -> OrderOut:
    found = await views.order_details(_runtime(request).session_factory, order_ids=[order_id])
    # Another customer's order is answered exactly like a missing one: its existence is not leaked.
    if not found or (found[0]["customer_id"] != who.id and not who.is_admin):
        raise OrderNotFound(order_id)
    return OrderOut(**found[0])

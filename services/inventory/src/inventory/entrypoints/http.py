from __future__ import annotations

from typing import Annotated, Any, cast
from uuid import UUID

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from emporium_kit.runtime import Runtime
from inventory.adapters import views
from inventory.domain.model import StockNotFound
from inventory.service_layer import handlers

router = APIRouter()


class StockLevel(BaseModel):
    product_id: UUID
    on_hand: int
    reserved: int
    available: int


class SetStock(BaseModel):
    on_hand: int = Field(ge=0, le=10**9)


class StockLevels(BaseModel):
    items: list[StockLevel]


class InvalidIds(ValueError):
    pass


def _runtime(request: Request) -> Runtime[Any]:
    return cast("Runtime[Any]", request.app.state.runtime)


@router.put("/inventory/{product_id}", response_model=StockLevel)
async def set_stock(product_id: UUID, body: SetStock, request: Request) -> StockLevel:
    async with _runtime(request).uow() as uow:
        item = await handlers.set_stock_level(product_id, body.on_hand, uow)
    return StockLevel(
        product_id=product_id, on_hand=item.on_hand, reserved=item.reserved, available=item.available
    )


@router.get("/inventory/{product_id}", response_model=StockLevel)
async def get_stock(product_id: UUID, request: Request) -> StockLevel:
    rows = await views.stock_levels(_runtime(request).session_factory, product_ids=[product_id])
    if not rows:
        raise StockNotFound(product_id)
    return StockLevel(**rows[0])


@router.get("/inventory", response_model=StockLevels)
async def list_stock(request: Request, ids: Annotated[str, Query(max_length=8000)]) -> StockLevels:
    try:
        product_ids = [UUID(p) for p in ids.split(",") if p.strip()]
    except ValueError as exc:
        raise InvalidIds(f"ids must be comma-separated UUIDs: {exc}") from exc
    rows = await views.stock_levels(_runtime(request).session_factory, product_ids=product_ids)
    return StockLevels(items=[StockLevel(**r) for r in rows])

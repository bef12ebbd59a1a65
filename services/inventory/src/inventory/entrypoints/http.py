from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from emporium_kit.edge import bus, parse_ids, runtime
from inventory.adapters import views
from inventory.domain.commands import SetStockLevel
from inventory.domain.model import StockItem, StockNotFound

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


@router.put("/inventory/{product_id}", response_model=StockLevel)
async def set_stock(product_id: UUID, body: SetStock, request: Request) -> StockLevel:
    item: StockItem = await bus(request).handle(SetStockLevel(product_id=product_id, on_hand=body.on_hand))
    return StockLevel(
        product_id=product_id, on_hand=item.on_hand, reserved=item.reserved, available=item.available
    )


@router.get("/inventory/{product_id}", response_model=StockLevel)
async def get_stock(product_id: UUID, request: Request) -> StockLevel:
    rows = await views.stock_levels(runtime(request).session_factory, product_ids=[product_id])
    if not rows:
        raise StockNotFound(product_id)
    return StockLevel(**rows[0])


@router.get("/inventory", response_model=StockLevels)
async def list_stock(request: Request, ids: Annotated[str, Query(max_length=8000)]) -> StockLevels:
    rows = await views.stock_levels(runtime(request).session_factory, product_ids=parse_ids(ids))
    return StockLevels(items=[StockLevel(**r) for r in rows])

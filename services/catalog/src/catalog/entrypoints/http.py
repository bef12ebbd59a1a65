"""HTTP routes: parse, build a command, call its handler, map the answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, cast
from uuid import UUID, uuid4

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from catalog.adapters import views
from catalog.domain.commands import CreateProduct, UpdateProduct
from catalog.domain.model import ProductNotFound
from catalog.service_layer import handlers
from emporium_kit.runtime import Runtime

router = APIRouter()

Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. USD")]


class ProductFields(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    price_cents: int = Field(ge=0, le=10**10)
    currency: Currency = "USD"
    category: str | None = Field(default=None, max_length=100)


class NewProduct(ProductFields):
    sku: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ProductOut(BaseModel):
    id: UUID
    sku: str
    name: str
    description: str
    price_cents: int
    currency: str
    category: str | None
    created_at: datetime
    updated_at: datetime


class ProductPage(BaseModel):
    items: list[ProductOut]
    total: int
    page: int
    page_size: int


def _runtime(request: Request) -> Runtime[Any]:
    return cast("Runtime[Any]", request.app.state.runtime)


@router.post("/products", status_code=201, response_model=ProductOut)
async def create_product(body: NewProduct, request: Request) -> ProductOut:
    runtime = _runtime(request)
    async with runtime.uow() as uow:
        product = await handlers.create_product(CreateProduct(product_id=uuid4(), **body.model_dump()), uow)
    return ProductOut.model_validate(product, from_attributes=True)


@router.put("/products/{product_id}", response_model=ProductOut)
async def update_product(product_id: UUID, body: ProductFields, request: Request) -> ProductOut:
    async with _runtime(request).uow() as uow:
        product = await handlers.update_product(
            UpdateProduct(product_id=product_id, **body.model_dump()), uow
        )
    return ProductOut.model_validate(product, from_attributes=True)


@router.get("/products", response_model=ProductPage)
async def list_products(
    request: Request,
    q: Annotated[str | None, Query(max_length=200)] = None,
    ids: Annotated[str | None, Query(description="comma-separated product ids")] = None,
    category: Annotated[str | None, Query(max_length=100)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> ProductPage:
    id_list = _parse_ids(ids) if ids is not None else None
    items, total = await views.list_products(
        _runtime(request).session_factory, q=q, ids=id_list, category=category, page=page, page_size=page_size
    )
    return ProductPage(items=[ProductOut(**i) for i in items], total=total, page=page, page_size=page_size)


@router.get("/products/{product_id}", response_model=ProductOut)
async def get_product(product_id: UUID, request: Request) -> ProductOut:
    product = await views.get_product(_runtime(request).session_factory, product_id=product_id)
    if product is None:
        raise ProductNotFound(product_id)
    return ProductOut(**product)


class InvalidIds(ValueError):
    pass


def _parse_ids(raw: str) -> list[UUID]:
    try:
        return [UUID(part) for part in raw.split(",") if part.strip()][:200]
    except ValueError as exc:
        raise InvalidIds(f"ids must be comma-separated UUIDs: {exc}") from exc

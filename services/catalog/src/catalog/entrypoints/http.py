"""HTTP routes: parse, build a command, call its handler, map the answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from catalog.adapters import views
from catalog.domain.commands import CreateProduct, UpdateProduct
from catalog.domain.model import ProductNotFound
from emporium_kit.edge import bus, parse_ids, runtime

router = APIRouter()

Sku = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", examples=["MUG-1"])
]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Description = Annotated[str, Field(max_length=5000)]
PriceCents = Annotated[int, Field(ge=0, le=10**10, description="minor units of the currency")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code", examples=["EUR"])]
Category = Annotated[str, Field(max_length=100)]


class NewProduct(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    sku: Sku
    name: Name
    description: Description = ""
    price_cents: PriceCents
    currency: Currency = "USD"
    category: Category | None = None


class ProductReplacement(BaseModel):
    """``PUT``: the product's whole editable state. Every field is required (``category`` may be
    ``null``), so a client that forgets one gets a 422 instead of a silent reset. The sku never
    changes and is ignored here, like any field the catalog does not know."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    name: Name
    description: Description
    price_cents: PriceCents
    currency: Currency
    category: Category | None


def _leaving_out_keeps(schema: dict[str, Any]) -> None:
    for prop in schema.get("properties", {}).values():
        prop.pop("default", None)  # a field left out has no default: it keeps its value


class ProductPatch(BaseModel):
    """``PATCH``: a JSON merge patch (RFC 7396). A field left out keeps its value; ``null`` clears
    ``category`` (the one nullable field) and is refused for the others, which cannot be unset
    (send ``""`` to empty ``description``). The sku never changes and is ignored here."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, json_schema_extra=_leaving_out_keeps)

    # ``SkipJsonSchema[None]``: None stands for "left out" in Python; the schema shows no null.
    name: Name | SkipJsonSchema[None] = None
    description: Description | SkipJsonSchema[None] = None
    price_cents: PriceCents | SkipJsonSchema[None] = None
    currency: Currency | SkipJsonSchema[None] = None
    category: Category | None = None

    @field_validator("name", "description", "price_cents", "currency")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:  # only an explicit null gets here; a field left out is not validated
            raise ValueError("cannot be null: leave it out to keep it (only category can be cleared)")
        return value


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


@router.post("/products", status_code=201, response_model=ProductOut)
async def create_product(body: NewProduct, request: Request) -> ProductOut:
    product = await bus(request).handle(CreateProduct(product_id=uuid4(), **body.model_dump()))
    return ProductOut.model_validate(product, from_attributes=True)


@router.put("/products/{product_id}", response_model=ProductOut)
async def replace_product(product_id: UUID, body: ProductReplacement, request: Request) -> ProductOut:
    """Replace every editable field; a field left out is a 422, never a reset."""
    return await _update(request, UpdateProduct(product_id=product_id, **body.model_dump()))


@router.patch("/products/{product_id}", response_model=ProductOut)
async def patch_product(product_id: UUID, body: ProductPatch, request: Request) -> ProductOut:
    """Merge patch: change the fields named, keep the rest (``null`` clears ``category``)."""
    named = body.model_dump(include=body.model_fields_set)
    return await _update(request, UpdateProduct(product_id=product_id, **named))


async def _update(request: Request, command: UpdateProduct) -> ProductOut:
    product = await bus(request).handle(command)
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
    id_list = parse_ids(ids) if ids is not None else None
    items, total = await views.list_products(
        runtime(request).session_factory, q=q, ids=id_list, category=category, page=page, page_size=page_size
    )
    return ProductPage(items=[ProductOut(**i) for i in items], total=total, page=page, page_size=page_size)


@router.get("/products/{product_id}", response_model=ProductOut)
async def get_product(product_id: UUID, request: Request) -> ProductOut:
    product = await views.get_product(runtime(request).session_factory, product_id=product_id)
    if product is None:
        raise ProductNotFound(product_id)
    return ProductOut(**product)

"""Request and response bodies of the public API.

Bodies bound for a service are validated here too, so a malformed request stops at the door
with a 422; they allow unknown fields, which pass through, so a service can grow its contract by
adding optional fields without a gateway release. The service stays the judge of its rules, and
the gateway must never accept a value the service refuses: tests/contract/test_http_contracts.py
compares each of these models with the service's own, field by field and constraint by constraint.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from gateway.domain.model import (
    EMAIL_MAX_LENGTH,
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    Role,
    is_valid_email,
    normalize_email,
)


class RegisterRequest(BaseModel):
    email: Annotated[str, Field(max_length=EMAIL_MAX_LENGTH + 64, examples=["ada@example.com"])]
    password: Annotated[str, Field(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH)]
    name: Annotated[str, Field(min_length=1, max_length=200)]

    @field_validator("email")
    @classmethod
    def _email_shape(cls, value: str) -> str:
        email = normalize_email(value)
        if not is_valid_email(email):
            raise ValueError("is not a valid e-mail address")
        return email

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


class UserOut(BaseModel):
    id: UUID
    email: str
    name: str
    role: Role


class LoginRequest(BaseModel):
    email: Annotated[str, Field(min_length=1, max_length=EMAIL_MAX_LENGTH + 64)]
    password: Annotated[str, Field(min_length=1, max_length=PASSWORD_MAX_LENGTH)]


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class MeOut(BaseModel):
    id: UUID
    email: str
    role: Role


# The catalog's rules for a product's fields (catalog.entrypoints.http), checked by the contract tests.
Sku = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", examples=["MUG-1"])
]
ProductName = Annotated[str, Field(min_length=1, max_length=200)]
Description = Annotated[str, Field(max_length=5000)]
PriceCents = Annotated[int, Field(ge=0, le=10**10, description="minor units of the currency")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code", examples=["EUR"])]
Category = Annotated[str, Field(max_length=100)]


class ProductCreate(BaseModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    sku: Sku
    name: ProductName
    description: Description = ""
    price_cents: PriceCents
    currency: Currency = "USD"
    category: Category | None = None


class ProductReplacement(BaseModel):
    """``PUT``: the product's whole editable state. Every field is required (``category`` may be
    ``null``), so a forgotten field is a 422, never a silent reset. The sku cannot be changed."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    name: ProductName
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
    (send ``""`` to empty ``description``). The sku cannot be changed."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True, json_schema_extra=_leaving_out_keeps)

    # ``SkipJsonSchema[None]``: None stands for "left out" in Python; the schema shows no null.
    name: ProductName | SkipJsonSchema[None] = None
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


class StockLevel(BaseModel):
    model_config = ConfigDict(extra="allow")

    on_hand: Annotated[int, Field(ge=0, le=10**9)]


class OrderLine(BaseModel):
    model_config = ConfigDict(extra="allow")

    product_id: UUID
    quantity: Annotated[int, Field(ge=1, le=1000)]


class PlaceOrderRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    items: Annotated[list[OrderLine], Field(min_length=1, max_length=100)]
    payment_token: Annotated[str, Field(min_length=1, max_length=200)]

    @field_validator("payment_token")
    @classmethod
    def _token_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

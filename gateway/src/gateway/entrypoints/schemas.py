"""Request and response bodies of the public API.

Bodies bound for a service are validated here too, so a malformed request stops at the door
with a 422; they allow unknown fields, which pass through, so a service can grow its contract by
adding optional fields without a gateway release. The service stays the judge of its rules.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

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


Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]


class ProductCreate(BaseModel):
    model_config = ConfigDict(extra="allow")

    sku: Annotated[str, Field(min_length=1, max_length=64)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=10_000)] | None = None
    price_cents: Annotated[int, Field(ge=0, le=10**12)]
    currency: Currency | None = None
    category: Annotated[str, Field(max_length=200)] | None = None


class ProductUpdate(BaseModel):
    model_config = ConfigDict(extra="allow")

    sku: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    description: Annotated[str, Field(max_length=10_000)] | None = None
    price_cents: Annotated[int, Field(ge=0, le=10**12)] | None = None
    currency: Currency | None = None
    category: Annotated[str, Field(max_length=200)] | None = None


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

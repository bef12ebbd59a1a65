"""What happened to an order, as the aggregate records it. The unit of work turns each into the
contract other services read (``orders.service_layer.messages``); the model knows no contract."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Placed:
    payment_token: str  # passed on to payments once, never stored with the order


@dataclass(frozen=True)
class Confirmed:
    pass


@dataclass(frozen=True)
class Cancelled:
    reason: str


DomainEvent = Placed | Confirmed | Cancelled

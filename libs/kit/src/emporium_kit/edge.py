"""What every service's routes share: the runtime and bus of the app, the caller's identity
(sent by the gateway, which authenticated it) and lists of ids in a query string."""

from __future__ import annotations

from typing import Annotated, Any, cast
from uuid import UUID

from fastapi import Depends, Header, HTTPException, Request
from pydantic import BaseModel

from emporium_events.bus import MessageBus
from emporium_kit.runtime import Runtime


def runtime(request: Request) -> Runtime[Any]:
    return cast("Runtime[Any]", request.app.state.runtime)


def bus(request: Request) -> MessageBus[Any]:
    return runtime(request).bus


class Caller(BaseModel):
    id: UUID
    email: str | None
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


async def caller(  # async: FastAPI would run a plain def in a worker thread
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


class InvalidIds(ValueError):
    """A query's id list that is not comma-separated UUIDs (a 422 in every service)."""


def parse_ids(raw: str, *, limit: int = 200) -> list[UUID]:
    """``a,b,c`` into UUIDs (blanks skipped, duplicates kept once, at most ``limit``)."""
    try:
        ids = [UUID(part) for part in raw.split(",") if part.strip()]
    except ValueError as exc:
        raise InvalidIds(f"ids must be comma-separated UUIDs: {exc}") from exc
    return list(dict.fromkeys(ids))[:limit]

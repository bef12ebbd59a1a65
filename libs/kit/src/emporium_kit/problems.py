"""Every error answer is ``application/problem+json`` (RFC 9457); domain errors are mapped once."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from emporium_events import correlation

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_SECONDS = "5"


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    if (request_id := correlation.request_id.get()) is not None:
        body.setdefault("request_id", request_id)  # quote it when reporting a problem
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=dict(headers or {}))


def _describe(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg')}")
    return "; ".join(parts)


def install(app: FastAPI, error_status: Mapping[type[Exception], int]) -> None:
    """Map HTTP, validation and the service's named domain errors to problem+json."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return problem(exc.status_code, detail, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()
        ]
        return problem(422, _describe(errors), errors=errors)

    for error_type, status in error_status.items():

        async def domain_error(_: Request, exc: Exception, status: int = status) -> JSONResponse:
            headers = {"Retry-After": RETRY_AFTER_SECONDS} if status == 503 else None
            return problem(status, str(exc), title=type(exc).__name__, headers=headers)

        app.add_exception_handler(error_type, domain_error)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(psycopg.OperationalError)  # raised by the statements run on psycopg directly
    @app.exception_handler(psycopg.InterfaceError)
    @app.exception_handler(PoolTimeout)
    async def database_unavailable(_: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %r", exc)
        return problem(
            503,
            "the service's database is unavailable; retry shortly",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the traceback; the client gets a problem document, not a stack trace.
        return problem(500, "an unexpected error occurred; it has been logged")

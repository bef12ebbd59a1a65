import httpx
import psycopg
import pytest
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError

from emporium_kit import problems


class OutOfWidgets(Exception):
    pass


class Body(BaseModel):
    quantity: int = Field(ge=1)


def app() -> FastAPI:
    app = FastAPI()
    problems.install(app, {OutOfWidgets: 409})

    @app.post("/widgets")
    async def order(body: Body) -> dict:
        return {"ok": body.quantity}

    @app.get("/conflict")
    async def conflict() -> dict:
        raise OutOfWidgets("no widgets left for you")

    @app.get("/forbidden")
    async def forbidden() -> dict:
        raise HTTPException(403, "admins only")

    @app.get("/db-down")
    async def db_down() -> dict:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("refused"))

    @app.get("/deadlock")
    async def deadlock() -> dict:  # what a statement run on psycopg directly raises, unwrapped
        raise psycopg.errors.DeadlockDetected("deadlock detected")

    @app.get("/bug")
    async def bug() -> dict:
        raise ZeroDivisionError("oops")

    return app


@pytest.fixture
async def client():
    transport = httpx.ASGITransport(app=app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


def is_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["detail"] and body["title"]
    return body


async def test_an_invalid_body_is_a_422_problem_that_names_the_field(client):
    body = is_problem(await client.post("/widgets", json={"quantity": 0}), 422)
    assert "quantity" in body["detail"] and body["errors"][0]["loc"] == ["body", "quantity"]


async def test_unparseable_json_is_a_422_problem(client):
    is_problem(
        await client.post("/widgets", content=b"{nope", headers={"content-type": "application/json"}), 422
    )


async def test_a_named_domain_error_maps_to_its_status_with_its_message(client):
    body = is_problem(await client.get("/conflict"), 409)
    assert body["detail"] == "no widgets left for you" and body["title"] == "OutOfWidgets"


async def test_http_errors_and_unknown_routes_are_problems_too(client):
    is_problem(await client.get("/forbidden"), 403)
    is_problem(await client.get("/nowhere"), 404)


async def test_a_database_outage_is_503_with_retry_after_never_500(client):
    response = await client.get("/db-down")
    is_problem(response, 503)
    assert response.headers["retry-after"] == "5"


async def test_a_deadlock_raised_by_psycopg_itself_is_a_503_too(client):
    response = await client.get("/deadlock")
    is_problem(response, 503)
    assert response.headers["retry-after"] == "5"


async def test_an_unexpected_error_is_a_500_problem_without_a_stack_trace(client):
    body = is_problem(await client.get("/bug"), 500)
    assert "oops" not in body["detail"]

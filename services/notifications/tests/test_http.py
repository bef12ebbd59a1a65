"""The route's edge: who the caller is comes from the gateway's X-User-* headers."""

import httpx
import pytest

from notifications.bootstrap import build_app


@pytest.mark.parametrize("headers", [{}, {"x-user-id": "not-a-uuid"}], ids=["missing", "malformed"])
async def test_a_caller_without_a_valid_user_id_gets_a_401_problem(headers):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app()), base_url="http://n") as c:
        r = await c.get("/notifications", headers=headers)
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
    assert "X-User-Id" in r.json()["detail"]

import httpx
from fastapi import FastAPI
from prometheus_client import REGISTRY

from emporium_kit import observability


def app() -> FastAPI:
    app = FastAPI()
    observability.instrument(app, "kittest")

    @app.get("/kit-widgets/{widget_id}")
    async def widget(widget_id: int) -> dict[str, int]:
        return {"id": widget_id}

    return app


def count(method: str, route: str, status: str) -> float:
    labels = {"http_request_method": method, "http_route": route, "http_response_status_code": status}
    return REGISTRY.get_sample_value("http_server_request_duration_seconds_count", labels) or 0.0


async def _get(method: str, path: str) -> int:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app()), base_url="http://t") as client:
        return (await client.request(method, path)).status_code


async def test_a_request_counts_in_the_otel_duration_histogram_under_its_route_template():
    before = count("GET", "/kit-widgets/{widget_id}", "200")
    assert await _get("GET", "/kit-widgets/7") == 200
    assert await _get("GET", "/kit-widgets/8") == 200
    assert count("GET", "/kit-widgets/{widget_id}", "200") == before + 2


async def test_an_unmatched_path_or_an_unknown_method_adds_no_new_series():
    before_unmatched, before_other = count("GET", "", "404"), count("_OTHER", "", "404")
    assert await _get("GET", "/no-such-thing-12345") == 404
    assert await _get("BREW", "/coffee") == 404
    assert count("GET", "", "404") == before_unmatched + 1
    assert count("_OTHER", "", "404") == before_other + 1

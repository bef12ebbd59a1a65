"""The Grafana dashboards of deploy/observability against the stack's real Prometheus: every
variable lists values, every query is accepted as Grafana sends it (a range query), and every
metric a query reads is on a running process's /metrics or is recorded by a rule."""

from __future__ import annotations

import time

import httpx
import pytest
from observability_code import (
    dashboards,
    exposed,
    queries,
    recorded,
    resolve_variables,
    unknown_names,
)

BOARDS = dashboards()


@pytest.fixture(scope="module")
async def prometheus(api, stack) -> str:
    """The stack's Prometheus once it has scraped an order's metrics (so that the variables
    that list routes and services have values)."""
    assert stack.monitoring is not None, "the stack runs its own Prometheus"
    _, token = await api.customer()
    await api.settled(token, (await api.place(token, await api.product(stock=1), 1))["id"])
    url = f"{stack.monitoring.prometheus_url}/api/v1"
    deadline = time.monotonic() + 30
    selector = 'http_server_request_duration_seconds_count{job="orders", http_route="/orders"}'
    while not httpx.get(f"{url}/series", params={"match[]": selector}, timeout=5).json()["data"]:
        assert time.monotonic() < deadline, "Prometheus has not scraped the order's request"
        time.sleep(0.5)
    return url


def _label_values(url: str):
    def choices(selector: str, label: str) -> list[str]:
        answer = httpx.get(f"{url}/label/{label}/values", params={"match[]": selector}, timeout=5)
        assert answer.status_code == 200, f"{selector}: {answer.text}"
        return list(answer.json()["data"])

    return choices


@pytest.mark.parametrize("name", list(BOARDS))
def test_every_dashboard_variable_lists_values_from_the_running_system(prometheus: str, name: str):
    values = resolve_variables(BOARDS[name], _label_values(prometheus))  # asserts each has some
    assert "datasource" in values


@pytest.mark.parametrize("name", list(BOARDS))
def test_every_dashboard_query_is_one_prometheus_accepts_as_grafana_sends_it(prometheus: str, name: str):
    """A range query over the last 5 minutes, as a time-series panel asks: a parse error is a 400
    with errorType bad_data, and so is an expression that is not an instant vector or a scalar."""
    board = BOARDS[name]
    now = time.time()
    refused = []
    for query in queries(board, resolve_variables(board, _label_values(prometheus))):
        answer = httpx.get(
            f"{prometheus}/query_range",
            params={"query": query.expr, "start": now - 300, "end": now, "step": 15},
            timeout=10,
        )
        body = answer.json()
        if answer.status_code != 200 or body.get("status") != "success":
            refused.append(f"{query}\n  -> {answer.status_code} {body.get('errorType')}: {body.get('error')}")
    assert not refused, "\n".join(refused)


def test_every_metric_a_dashboard_reads_is_exposed_by_a_running_process_or_recorded_by_a_rule(
    prometheus: str, stack
):
    known = {"up"} | recorded()  # up: Prometheus's own, per target
    for name in stack.names:
        url = stack.gateway_url if name == "gateway" else stack.service_url(name)
        known |= exposed(httpx.get(f"{url}/metrics", timeout=5).text)
    unknown = []
    for board in BOARDS.values():
        for query in queries(board, resolve_variables(board, _label_values(prometheus))):
            if missing := unknown_names(query.expr, known):
                unknown.append(f"{query}\n  -> reads {missing}, which no process exposes or rule records")
    assert not unknown, "\n".join(unknown)

"""What the gateway costs, measured fairly: the same work through the gateway and without it,
both driven by vegeta at the same rates, in the same run.

- **pass-through**: ``GET /api/v1/orders/{id}`` through the gateway (bearer token, verified
  there) against the orders service's own ``GET /orders/{id}`` with the identity headers the
  gateway would have written (``X-User-Id``, ``-Email``, ``-Role``), over the same orders and
  owners; and through a bare nginx (one worker, keepalive upstream) as the yardstick of a
  minimal reverse proxy.
- **product list**: ``GET /api/v1/products?page_size=20`` through the gateway (the catalog's
  page, then the stock of its products from inventory) against a client doing the same two calls
  itself: the catalog's ``GET /products?page_size=20`` and inventory's ``GET /inventory?ids=...``
  for that page. vegeta sends the two direct calls alternately at twice the rate, so both sides do
  the same pages per second; a direct page's latency is its two calls' latencies added.

For each: at each offered rate (open loop, latency from the scheduled start) the achieved rate,
p50/p99 and the CPU per request of the processes involved; then the throughput closed loop with
a fixed number of workers (``rate`` 0), which gives the gateway/direct ratio.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx
import loadgen
import sqlalchemy as sa
import vegeta

if TYPE_CHECKING:
    from run import Bench

CLOSED_LOOP_WORKERS = 32


async def _measure(
    bench: Bench,
    targets: Sequence[vegeta.Target],
    *,
    rate: float,
    seconds: float,
    processes: Sequence[str],
    per_unit: int = 1,
) -> dict[str, Any]:
    """One attack; figures per unit (a unit = ``per_unit`` requests: a page made of two calls)."""
    before = bench.processes.snapshot()
    attack = await vegeta.attack(
        bench.generator,
        list(targets),
        rate=rate * per_unit,
        seconds=seconds,
        lazy=False,
        max_workers=CLOSED_LOOP_WORKERS if rate == 0 else 10_000,
        workers=CLOSED_LOOP_WORKERS if rate == 0 else 64,
    )
    after = bench.processes.snapshot()
    results = attack.results
    ok = [r for r in results if 200 <= r.status < 300]
    units = len(ok) / per_unit
    cpu = bench.processes.per_order(before, after, round(units))
    if rate > 0:
        latencies = {id(s.result): s.latency for s in attack.scheduled()}
    else:
        latencies = {id(r): r.latency for r in results}
    by_url: dict[str, list[float]] = {}
    if per_unit > 1:  # the calls that make one unit, each on its own
        for r in results:
            by_url.setdefault(r.url.split("?", 1)[0], []).append(latencies[id(r)])
    parts = {url: loadgen.summary_ms(values) for url, values in by_url.items()}
    latency = loadgen.summary_ms(list(latencies.values()))
    if per_unit > 1:  # a unit's latency: its calls one after the other
        latency = {
            k: round(sum(p[k] or 0.0 for p in parts.values()), 2) for k in ("p50", "p95", "p99", "mean")
        }
    span = max((r.finished for r in results), default=0.0) - min((r.started for r in results), default=0.0)
    return {
        "offered_rate": rate if rate > 0 else "closed loop",
        "workers": CLOSED_LOOP_WORKERS if rate == 0 else None,
        "requests": len(results),
        "errors": len(results) - len(ok),
        "per_second": round(units / max(span, 1e-9), 1),
        "latency_ms": {k: latency.get(k) for k in ("p50", "p95", "p99", "mean")},
        "parts_latency_ms": {u: {k: p[k] for k in ("p50", "p99")} for u, p in parts.items()}
        if per_unit > 1
        else None,
        "cpu_ms_per_request": {name: cpu.get(name, 0.0) for name in processes}
        | {"total": round(sum(cpu.get(name, 0.0) for name in processes), 3)},
        "load_generator_cpu_ms_per_request": round(attack.cpu_seconds / max(units, 1) * 1000, 3),
    }


async def _pair(
    bench: Bench,
    arms: dict[str, tuple[Sequence[vegeta.Target], Sequence[str], int]],
    *,
    rates: Sequence[float],
    seconds: float,
) -> dict[str, Any]:
    found: dict[str, Any] = {name: {"at_rates": [], "closed_loop": None} for name in arms}
    for rate in [*rates, 0.0]:
        for name, (targets, processes, per_unit) in arms.items():
            await asyncio.sleep(1)
            step = await _measure(
                bench, targets, rate=rate, seconds=seconds, processes=processes, per_unit=per_unit
            )
            if rate > 0:
                found[name]["at_rates"].append(step)
            else:
                found[name]["closed_loop"] = step
            print(
                f"    {name:>8} {step['offered_rate']!s:>11}: {step['per_second']}/s, "
                f"p50 {step['latency_ms']['p50']} p99 {step['latency_ms']['p99']} ms, "
                f"CPU {step['cpu_ms_per_request']['total']} ms/request, errors {step['errors']}",
                flush=True,
            )
    direct = found["direct"]
    found["ratio"] = {
        name: {
            "throughput": _ratio(
                found[name]["closed_loop"]["per_second"], direct["closed_loop"]["per_second"]
            ),
            "cpu_per_request_direct_over_this": [
                _ratio(d["cpu_ms_per_request"]["total"], g["cpu_ms_per_request"]["total"])
                for d, g in zip(direct["at_rates"], found[name]["at_rates"], strict=True)
            ],
        }
        for name in arms
        if name != "direct"
    }
    return found


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return round(top / bottom, 3) if top and bottom else None


async def measure_all(
    bench: Bench, *, rates: Sequence[float], seconds: float, nginx: bool = True
) -> dict[str, Any]:
    stack, shop = bench.stack, bench.shop
    found: dict[str, Any] = {"rates": list(rates), "seconds": seconds}

    # pass-through: the benchmark's own recent orders, each read as its owner
    ids = bench.recent_orders[-500:]
    with bench.orders_db.connect() as conn:
        owners = dict(
            conn.execute(
                sa.text(
                    "SELECT id::text, customer_id::text FROM orders WHERE id = ANY(CAST(:ids AS uuid[]))"
                ),
                {"ids": ids},
            ).all()
        )
    customers = {c.user_id: c for c in shop.customers}
    orders = [(oid, customers[owner]) for oid, owner in owners.items() if owner in customers]
    if not orders:
        found["pass_through"] = {"error": "no orders of the benchmark's customers to read"}
    else:
        gateway = [
            vegeta.Target("GET", f"{stack.gateway_url}/api/v1/orders/{oid}", headers=c.bearer)
            for oid, c in orders
        ]
        direct = [
            vegeta.Target(
                "GET",
                f"{stack.service_url('orders')}/orders/{oid}",
                headers=c.identity | {"Accept": "application/json"},
            )
            for oid, c in orders
        ]
        arms: dict[str, tuple[Sequence[vegeta.Target], Sequence[str], int]] = {
            "direct": (direct, ("orders", "postgresql"), 1),
            "gateway": (gateway, ("gateway", "orders", "postgresql"), 1),
        }
        print(f"  pass-through GET /orders/{{id}} ({len(orders)} orders):", flush=True)
        if nginx:
            import references

            with references.nginx_proxy(stack.ports["orders"]) as port:
                arms["nginx"] = (
                    [
                        vegeta.Target(
                            "GET",
                            t.url.replace(stack.service_url("orders"), f"http://127.0.0.1:{port}"),
                            headers=t.headers,
                        )
                        for t in direct
                    ],
                    ("orders", "postgresql"),  # nginx itself is not one of the stack's processes
                    1,
                )
                found["pass_through"] = await _pair(bench, arms, rates=rates, seconds=seconds)
        else:
            found["pass_through"] = await _pair(bench, arms, rates=rates, seconds=seconds)

    # product list: the gateway's page against the catalog's page + inventory's levels for it
    async with httpx.AsyncClient(timeout=10) as http:
        page = (await http.get(f"{stack.service_url('catalog')}/products", params={"page_size": 20})).json()
    page_ids = [p["id"] for p in page.get("items", []) if isinstance(p, dict) and "id" in p]
    arms = {
        "direct": (
            [
                vegeta.Target("GET", f"{stack.service_url('catalog')}/products?page_size=20"),
                vegeta.Target("GET", f"{stack.service_url('inventory')}/inventory?ids={','.join(page_ids)}"),
            ],
            ("catalog", "inventory", "postgresql"),
            2,
        ),
        "gateway": (
            [vegeta.Target("GET", f"{stack.gateway_url}/api/v1/products?page_size=20")],
            ("gateway", "catalog", "inventory", "postgresql"),
            1,
        ),
    }
    print("  product list (gateway vs catalog + inventory):", flush=True)
    found["product_list"] = await _pair(bench, arms, rates=rates, seconds=seconds)
    return found

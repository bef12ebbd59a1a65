"""An open-loop load generator: requests start on a fixed schedule whatever the answers do,
so a slow system builds a queue instead of slowing the client down (closed-loop tools
under-report queueing). Latency is measured from each request's scheduled start.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx


@dataclass
class Sample:
    kind: str  # "order", "list", "search", "product"
    scheduled: float  # wall clock (time.time) the request was due
    finished: float
    status: int  # 0 = transport error
    order_id: str | None = None

    @property
    def latency(self) -> float:
        return self.finished - self.scheduled


@dataclass
class Run:
    rate: float
    seconds: float
    samples: list[Sample] = field(default_factory=list)
    late_starts: int = 0  # requests the generator itself could not start on time (> 10 ms late)

    def of(self, kind: str | None = None) -> list[Sample]:
        return [s for s in self.samples if kind is None or s.kind == kind]


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(values: list[float]) -> dict[str, float | None]:
    ms = [v * 1000 for v in values]
    return {
        "count": len(ms),
        "mean": round(statistics.fmean(ms), 2) if ms else None,
        **{
            f"p{str(p).replace('.', '_')}": (round(v, 2) if (v := percentile(ms, p)) is not None else None)
            for p in (50, 95, 99, 99.9)
        },
        "max": round(max(ms), 2) if ms else None,
    }


@dataclass
class Shop:
    """What the load needs: customers' tokens and products (with deep stock) to order."""

    http: httpx.AsyncClient
    customers: list[dict[str, str]]
    products: list[str]
    search_terms: list[str]

    @classmethod
    async def prepare(
        cls,
        http: httpx.AsyncClient,
        admin_email: str,
        admin_password: str,
        *,
        customers: int = 20,
        products: int = 10,
    ) -> Shop:
        async def login(email: str, password: str) -> dict[str, str]:
            r = await http.post("/api/v1/auth/login", json={"email": email, "password": password})
            r.raise_for_status()
            return {"Authorization": f"Bearer {r.json()['access_token']}"}

        admin = await login(admin_email, admin_password)
        tag = uuid.uuid4().hex[:6]
        product_ids, terms = [], []
        for n in range(products):
            word = f"bench{tag}{n}"
            r = await http.post(
                "/api/v1/products",
                headers=admin,
                json={
                    "sku": f"BENCH-{tag}-{n}",
                    "name": f"Benchmark item {word}",
                    "price_cents": 500 + 37 * n,
                    "currency": "USD",
                    "category": "bench",
                },
            )
            r.raise_for_status()
            pid = r.json()["id"]
            (
                await http.put(f"/api/v1/inventory/{pid}", headers=admin, json={"on_hand": 10_000_000})
            ).raise_for_status()
            product_ids.append(pid)
            terms.append(word)
        tokens = []
        for _ in range(customers):
            email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
            (
                await http.post(
                    "/api/v1/auth/register",
                    json={"email": email, "password": "bench-password", "name": "Bench"},
                )
            ).raise_for_status()
            tokens.append(await login(email, "bench-password"))
        return cls(http=http, customers=tokens, products=product_ids, search_terms=terms)

    # one request each --------------------------------------------------------------------

    async def order(self, rng: random.Random) -> tuple[int, str | None]:
        body = {
            "items": [{"product_id": rng.choice(self.products), "quantity": 1}],
            "payment_token": "tok_visa",
        }
        r = await self.http.post(
            "/api/v1/orders",
            json=body,
            headers=rng.choice(self.customers) | {"Idempotency-Key": str(uuid.uuid4())},
        )
        return r.status_code, (r.json()["id"] if r.status_code == 202 else None)

    async def browse(self, rng: random.Random) -> tuple[str, int]:
        pick = rng.random()
        if pick < 0.4:
            r = await self.http.get("/api/v1/products", params={"page": rng.randint(1, 3), "page_size": 20})
            return "list", r.status_code
        if pick < 0.7:
            r = await self.http.get("/api/v1/products", params={"q": rng.choice(self.search_terms)})
            return "search", r.status_code
        r = await self.http.get(f"/api/v1/products/{rng.choice(self.products)}")
        return "product", r.status_code


async def open_loop(rate: float, seconds: float, fire: Callable[[float], Awaitable[Sample]]) -> Run:
    """Start ``fire(scheduled)`` at ``rate`` per second for ``seconds``; wait for all to finish."""
    run = Run(rate=rate, seconds=seconds)
    tasks: list[asyncio.Task[Sample]] = []
    loop = asyncio.get_running_loop()
    start_mono, start_wall = loop.time(), time.time()
    total = int(rate * seconds)
    for i in range(total):
        due = start_mono + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.01:
            run.late_starts += 1
        tasks.append(asyncio.create_task(fire(start_wall + i / rate)))
    run.samples = list(await asyncio.gather(*tasks))
    return run


def checkout_fire(shop: Shop, rng: random.Random) -> Callable[[float], Awaitable[Sample]]:
    async def fire(scheduled: float) -> Sample:
        try:
            status, order_id = await shop.order(rng)
        except httpx.HTTPError:
            status, order_id = 0, None
        return Sample("order", scheduled, time.time(), status, order_id)

    return fire


def browse_fire(shop: Shop, rng: random.Random) -> Callable[[float], Awaitable[Sample]]:
    async def fire(scheduled: float) -> Sample:
        try:
            kind, status = await shop.browse(rng)
        except httpx.HTTPError:
            kind, status = "list", 0
        return Sample(kind, scheduled, time.time(), status)

    return fire


def mixed_fire(
    shop: Shop, rng: random.Random, checkout_share: float = 0.1
) -> Callable[[float], Awaitable[Sample]]:
    checkout, browse = checkout_fire(shop, rng), browse_fire(shop, rng)

    async def fire(scheduled: float) -> Sample:
        return await (checkout if rng.random() < checkout_share else browse)(scheduled)

    return fire

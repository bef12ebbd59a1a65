"""The fault-injection harness: the real system, a stream of orders, one fault at a time, and
the invariants checked afterwards against every service's own database.

Kafka and PostgreSQL are real processes with a fault proxy in front of each; every service
and the gateway reach them only through the proxies, so network faults hit real traffic.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from proxy import FaultProxy

from emporium_devstack.kafka import KafkaBroker, ensure_kafka_libs
from emporium_devstack.ports import free_port
from emporium_devstack.postgres import PostgresCluster
from emporium_devstack.stack import GATEWAY, SERVICES, Stack
from emporium_devstack.testing import cache_dir, repo_root
from emporium_kit.runtime import TOPIC_PARTITIONS

log = logging.getLogger("faults")

SETTLE_SECONDS = 30.0
CARDS = ["tok_visa"] * 6 + ["tok_chargeDeclined"]
INVARIANTS = ("terminal", "money", "stock", "outbox_dlq", "duplicates")


@dataclass
class Result:
    scenario: str
    orders: int = 0
    not_accepted: int = 0
    faults: int = 0
    duplicates: int = 0
    violations: dict[str, list[str]] = field(default_factory=lambda: {name: [] for name in INVARIANTS})
    seconds: float = 0.0

    @property
    def violation_count(self) -> int:
        return sum(len(v) for v in self.violations.values())


@dataclass
class Scenario:
    name: str
    inject: Callable[[FaultSuite, Result], Awaitable[None]]
    duplicates_expected: bool = False
    poison: bool = False


class FaultSuite:
    def __init__(
        self, work_dir: Path, *, load_seconds: float = 6.0, rate: float = 10.0, seed: int | None = None
    ) -> None:
        self.work_dir = work_dir
        self.load_seconds = load_seconds
        self.rate = rate
        self.random = random.Random(seed)
        self.poison_values: set[bytes] = set()
        # duplicates each service counted in the current scenario: (pid, count when we started
        # watching that process) per service, and what restarted processes had counted
        self._duplicates_base: dict[str, tuple[int | None, float]] = {}
        self._duplicates_banked: dict[str, float] = {}

    # ------------------------------------------------------------------ the system under test

    async def start(self) -> None:
        libs = await asyncio.to_thread(ensure_kafka_libs, cache_dir())
        kafka_front, pg_front = free_port(), free_port()
        self.broker = KafkaBroker(
            libs_dir=libs, data_dir=self.work_dir / "kafka", advertised_port=kafka_front
        )
        await asyncio.to_thread(self.broker.start)
        self.postgres = PostgresCluster(data_dir=self.work_dir / "pg" / "data")
        await asyncio.to_thread(self.postgres.init)
        # Durable settings (fsync, synchronous_commit on), as in production: with the tests' "fast"
        # settings a crash loses commits PostgreSQL already acknowledged, and no design survives that.
        await asyncio.to_thread(self.postgres.start)
        self.kafka_proxy = FaultProxy(listen_port=kafka_front, target_port=self.broker.port)
        self.pg_proxy = FaultProxy(listen_port=pg_front, target_port=self.postgres.port)
        await self.kafka_proxy.start()
        await self.pg_proxy.start()
        urls, self.direct_urls = {}, {}
        for name in (*SERVICES, GATEWAY):
            password = f"faults-{name}"
            await asyncio.to_thread(self.postgres.ensure_database, name, name, password)
            self.direct_urls[name] = self.postgres.url(name, name, password)
            urls[name] = self.direct_urls[name].replace(f":{self.postgres.port}/", f":{pg_front}/")
        self.stack = Stack(
            root=repo_root(),
            cache_dir=cache_dir(),
            work_dir=self.work_dir / "stack",
            free_ports=True,
            echo=False,
            log_level="WARNING",
            kafka_bootstrap=f"127.0.0.1:{kafka_front}",
            database_urls=urls,
        )
        await asyncio.to_thread(self.stack.start, 180)
        self.engines = {
            name: sa.create_engine(url, pool_pre_ping=True) for name, url in self.direct_urls.items()
        }
        self.http = httpx.AsyncClient(base_url=self.stack.gateway_url, timeout=10)
        self.admin = await self._login(self.stack.admin_email, self.stack.admin_password)

    async def stop(self) -> None:
        if hasattr(self, "http"):
            await self.http.aclose()
        for engine in getattr(self, "engines", {}).values():
            engine.dispose()
        if hasattr(self, "stack"):
            await asyncio.to_thread(self.stack.stop)
        for proxy in ("kafka_proxy", "pg_proxy"):
            if hasattr(self, proxy):
                await getattr(self, proxy).stop()
        if hasattr(self, "broker"):
            await asyncio.to_thread(self.broker.stop)
        if hasattr(self, "postgres"):
            await asyncio.to_thread(self.postgres.stop)

    # ------------------------------------------------------------------ helpers

    def query(self, name: str, sql: str, **params: object) -> list[sa.Row]:
        with self.engines[name].begin() as conn:
            return list(conn.execute(sa.text(sql), params).all())

    async def q(self, name: str, sql: str, **params: object) -> list[sa.Row]:
        for _ in range(60):  # the checker's own connection may meet a restarting PostgreSQL
            try:
                return await asyncio.to_thread(self.query, name, sql, **params)
            except sa.exc.OperationalError:
                await asyncio.sleep(0.5)
        return await asyncio.to_thread(self.query, name, sql, **params)

    async def _login(self, email: str, password: str) -> dict[str, str]:
        r = await self.http.post("/api/v1/auth/login", json={"email": email, "password": password})
        r.raise_for_status()
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    async def _call(self, method: str, path: str, **kwargs: object) -> httpx.Response | None:
        """A client that retries what failed at the edge (503, 5xx, transport errors) with the
        same Idempotency-Key, as a careful app would."""
        for attempt in range(8):
            try:
                r = await self.http.request(method, path, **kwargs)
                if r.status_code < 500:
                    return r
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.25 * (attempt + 1))
        return None

    async def duplicates_seen(self) -> dict[str, float]:
        """Duplicates each running process has counted since it started (its /metrics)."""
        seen = {}
        for name in SERVICES:
            try:
                text = (await self.http.get(f"{self.stack.service_url(name)}/metrics", timeout=2)).text
            except httpx.HTTPError:
                seen[name] = 0.0
                continue
            seen[name] = sum(
                float(m.group(2))
                for m in re.finditer(rf"emporium_{name}_events_consumed_total{{([^}}]*)}} ([0-9.e+]+)", text)
                if 'outcome="duplicate"' in m.group(1)
            )
        return seen

    async def restart(self, name: str) -> int:
        """Restart a service and wait for it to be ready; returns 1 if an armed failpoint made it
        crash on the way (it is then disarmed and started again), else 0."""
        process = self.stack.services[name]
        await self._bank_duplicates(name)
        try:
            await asyncio.to_thread(process.restart, wait=True, timeout=90)
            crashed = 0
        except RuntimeError:
            if process.env.pop("EMPORIUM_FAILPOINTS", None) is None:
                raise
            await asyncio.to_thread(process.restart, wait=True, timeout=90)
            crashed = 1
        self._duplicates_base[name] = (process.pid, 0.0)  # the new instance counts from zero
        return crashed

    async def _bank_duplicates(self, name: str) -> None:
        """Before a restart wipes a process's counters, keep what it counted in this scenario
        (a duplicate consumed by a process restarted later still counts as observed)."""
        pid, base = self._duplicates_base.get(name, (None, 0.0))
        if self.stack.services[name].running and self.stack.services[name].pid == pid:
            now = (await self.duplicates_seen())[name]
            self._duplicates_banked[name] = self._duplicates_banked.get(name, 0.0) + max(0.0, now - base)

    async def _start_counting_duplicates(self) -> None:
        seen = await self.duplicates_seen()
        self._duplicates_base = {name: (self.stack.services[name].pid, seen[name]) for name in SERVICES}
        self._duplicates_banked = {}

    async def _duplicates_in_scenario(self) -> int:
        seen = await self.duplicates_seen()
        total = 0.0
        for name in SERVICES:
            pid, base = self._duplicates_base.get(name, (None, 0.0))
            current = seen[name] - base if self.stack.services[name].pid == pid else seen[name]
            total += self._duplicates_banked.get(name, 0.0) + max(0.0, current)
        return int(total)

    # ------------------------------------------------------------------ one scenario

    async def run(self, scenario: Scenario) -> Result:
        result = Result(scenario.name)
        started = time.monotonic()
        products = {}
        for _ in range(3):
            r = await self._call(
                "POST",
                "/api/v1/products",
                headers=self.admin,
                json={
                    "sku": f"F-{uuid.uuid4().hex[:10]}",
                    "name": "Fault-test widget",
                    "price_cents": self.random.randint(100, 9000),
                    "currency": "USD",
                    "category": "faults",
                },
            )
            assert r is not None and r.status_code == 201, r and r.text
            pid = r.json()["id"]
            stock = self.random.randint(15, 30)
            r = await self._call(
                "PUT", f"/api/v1/inventory/{pid}", headers=self.admin, json={"on_hand": stock}
            )
            assert r is not None and r.status_code == 200, r and r.text
            products[pid] = stock
        customers = {}
        for _ in range(4):
            email = f"f-{uuid.uuid4().hex[:10]}@example.com"
            r = await self._call(
                "POST", "/api/v1/auth/register", json={"email": email, "password": "fault-pass", "name": "F"}
            )
            assert r is not None and r.status_code == 201, r and r.text
            customers[r.json()["id"]] = await self._login(email, "fault-pass")

        dead_before = {
            name: (await self.q(name, "SELECT coalesce(max(id), 0) FROM dead_letters"))[0][0]
            for name in SERVICES
        }
        await self._start_counting_duplicates()
        keys: dict[str, tuple[str, str]] = {}  # idempotency key -> (customer id, order id or "")

        async def one_order() -> None:
            customer = self.random.choice(list(customers))
            key = str(uuid.uuid4())
            lines = self.random.sample(list(products), self.random.choice([1, 1, 2]))
            body = {
                "items": [{"product_id": p, "quantity": self.random.randint(1, 3)} for p in lines],
                "payment_token": self.random.choice(CARDS),
            }
            keys[key] = (customer, "")
            r = await self._call(
                "POST", "/api/v1/orders", json=body, headers=customers[customer] | {"Idempotency-Key": key}
            )
            if r is None or r.status_code != 202:
                result.not_accepted += 1
                return
            order_id = r.json()["id"]
            keys[key] = (customer, order_id)
            result.orders += 1
            if self.random.random() < 0.08:
                await asyncio.sleep(self.random.uniform(0, 0.5))
                await self._call(
                    "POST",
                    f"/api/v1/orders/{order_id}/cancel",
                    headers=customers[customer] | {"Idempotency-Key": f"cancel-{key}"},
                )

        async def load() -> None:
            tasks = []
            deadline = time.monotonic() + self.load_seconds
            while time.monotonic() < deadline:
                tasks.append(asyncio.create_task(one_order()))
                await asyncio.sleep(1 / self.rate)
            await asyncio.gather(*tasks)

        load_task = asyncio.create_task(load())
        await asyncio.sleep(self.random.uniform(0.5, max(0.6, self.load_seconds / 3)))
        await scenario.inject(self, result)
        await load_task

        await self._check(result, scenario, products, customers, keys, dead_before)
        result.seconds = time.monotonic() - started
        return result

    # ------------------------------------------------------------------ invariants

    async def _eventually(
        self, check: Callable[[], Awaitable[list[str]]], timeout: float = SETTLE_SECONDS
    ) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            problems = await check()
            if not problems or time.monotonic() > deadline:
                return problems
            await asyncio.sleep(0.25)

    async def _check(
        self,
        result: Result,
        scenario: Scenario,
        products: dict[str, int],
        customers: dict,
        keys: dict[str, tuple[str, str]],
        dead_before: dict[str, int],
    ) -> None:
        customer_ids = list(customers)
        accepted = {order for _, order in keys.values() if order}

        async def orders_state() -> list[sa.Row]:
            return await self.q(
                "orders",
                "SELECT id::text, status, total_cents, idempotency_key, customer_id::text "
                "FROM orders WHERE customer_id::text = ANY(:c)",
                c=customer_ids,
            )

        # 1. every order that got a 202 exists and ends CONFIRMED or CANCELLED
        async def terminal() -> list[str]:
            rows = {r.id: r for r in await orders_state()}
            problems = [f"order {o} accepted but missing" for o in accepted if o not in rows]
            problems += [
                f"order {r.id} still {r.status}"
                for r in rows.values()
                if r.status not in ("CONFIRMED", "CANCELLED")
            ]
            return problems

        result.violations["terminal"] = await self._eventually(terminal)

        # 2. at most one capture per order; captured - refunded = sum of CONFIRMED totals.
        # Orders are read afresh on every try: a client's cancel that timed out at the edge may
        # still land later (a confirmed order turning cancelled and refunded).
        async def money() -> list[str]:
            problems = []
            rows = await orders_state()
            candidate = {}
            for r in rows:
                candidate[f"charge:{r.id}"] = r.id
                if r.idempotency_key:
                    candidate[f"charge:{r.customer_id}:{r.idempotency_key}"] = r.id
                candidate[f"refund:{r.id}"] = r.id
            ops = await self.q(
                "payments",
                "SELECT idempotency_key, kind, amount_cents FROM sandbox_provider_operations "
                "WHERE approved AND idempotency_key = ANY(:k)",
                k=list(candidate),
            )
            charges: dict[str, int] = {}
            charged = refunded = 0
            for op in ops:
                if op.kind == "charge":
                    charges[candidate[op.idempotency_key]] = charges.get(candidate[op.idempotency_key], 0) + 1
                    charged += op.amount_cents
                else:
                    refunded += op.amount_cents
            problems += [f"order {o} charged {n} times" for o, n in charges.items() if n > 1]
            confirmed = sum(r.total_cents for r in rows if r.status == "CONFIRMED")
            if charged - refunded != confirmed:
                problems.append(f"captured {charged} - refunded {refunded} != confirmed {confirmed}")
            return problems

        # Compensations may follow a TIMEOUT cancellation that itself comes at the saga deadline.
        result.violations["money"] = await self._eventually(money, timeout=2 * SETTLE_SECONDS)

        # 3. stock conservation per product; nothing reserved at rest; nothing negative
        async def stock() -> list[str]:
            problems = []
            sold = await self.q(
                "orders",
                "SELECT l.product_id::text, sum(l.quantity) FROM order_lines l JOIN orders o "
                "ON o.id = l.order_id WHERE o.status = 'CONFIRMED' AND l.product_id::text = ANY(:p) "
                "GROUP BY l.product_id",
                p=list(products),
            )
            sold_by = {p: int(n) for p, n in sold}
            levels = await self.q(
                "inventory",
                "SELECT product_id::text, on_hand, reserved FROM stock WHERE product_id::text = ANY(:p)",
                p=list(products),
            )
            for pid, on_hand, reserved in levels:
                if on_hand + sold_by.get(pid, 0) != products[pid]:
                    problems.append(
                        f"{pid}: start {products[pid]} != on_hand {on_hand} + confirmed {sold_by.get(pid, 0)}"
                    )
                if reserved != 0:
                    problems.append(f"{pid}: {reserved} still reserved at rest")
                if on_hand < 0 or reserved < 0:
                    problems.append(f"{pid}: negative stock {on_hand}/{reserved}")
            return problems

        result.violations["stock"] = await self._eventually(stock)

        # 4. no outbox row left unsent; dead letters only where poison was planted
        async def outbox_dlq() -> list[str]:
            problems = []
            for name in SERVICES:
                unsent = (await self.q(name, "SELECT count(*) FROM outbox WHERE sent_at IS NULL"))[0][0]
                if unsent:
                    problems.append(f"{name}: {unsent} outbox rows unsent")
                letters = await self.q(
                    name, "SELECT id, value, error_type FROM dead_letters WHERE id > :i", i=dead_before[name]
                )
                for letter in letters:
                    if bytes(letter.value or b"") not in self.poison_values:
                        problems.append(f"{name}: unexpected dead letter {letter.id} ({letter.error_type})")
            if scenario.poison:
                planted = 0
                for name in SERVICES:
                    planted += len(
                        await self.q(name, "SELECT id FROM dead_letters WHERE id > :i", i=dead_before[name])
                    )
                if not planted:
                    problems.append("poison was planted but nothing was dead-lettered")
            return problems

        result.violations["outbox_dlq"] = await self._eventually(outbox_dlq)

        # 5. duplicates delivered in the duplicate scenarios, and no duplicate effect anywhere
        result.duplicates += await self._duplicates_in_scenario()
        problems = []
        if scenario.duplicates_expected and result.duplicates == 0:
            problems.append("no duplicate delivery was observed")
        twice = await self.q(
            "notifications",
            "SELECT order_id::text, type, count(*) FROM notifications "
            "WHERE customer_id::text = ANY(:c) GROUP BY 1, 2 HAVING count(*) > 1",
            c=customer_ids,
        )
        problems += [f"order {o}: {n} '{t}' notifications" for o, t, n in twice]
        confirmed_twice = await self.q(
            "orders",
            "SELECT h.order_id::text, count(*) FROM order_history h JOIN orders o "
            "ON o.id = h.order_id WHERE h.status = 'CONFIRMED' AND o.customer_id::text = ANY(:c) "
            "GROUP BY 1 HAVING count(*) > 1",
            c=customer_ids,
        )
        problems += [f"order {o} confirmed {n} times" for o, n in confirmed_twice]
        result.violations["duplicates"] = problems


# ---------------------------------------------------------------------- fault injectors


async def kill_and_restart(suite: FaultSuite, result: Result, names: list[str]) -> None:
    for name in names:
        await asyncio.sleep(suite.random.uniform(0.2, 1.0))
        suite.stack.services[name].kill()
        result.faults += 1
        await asyncio.sleep(suite.random.uniform(0.2, 1.5))
        await suite.restart(name)


async def crash_at(
    suite: FaultSuite,
    result: Result,
    point: str,
    probability: float,
    names: list[str],
    crashes: int = 3,
    window: float = 8.0,
) -> None:
    """Arm a failpoint (the process SIGKILLs itself there), restart whatever dies, count crashes.
    A service that has crashed is restarted disarmed, so a crash loop cannot starve the test."""
    crashed = 0

    async def restart_disarmed(name: str) -> None:
        nonlocal crashed
        process = suite.stack.services[name]
        process.env.pop("EMPORIUM_FAILPOINTS", None)
        crashed += await suite.restart(name)

    for name in names:
        suite.stack.services[name].env["EMPORIUM_FAILPOINTS"] = f"{point}={probability}"
        crashes_on_start = await suite.restart(name)
        if crashes_on_start:
            crashed += crashes_on_start
            await restart_disarmed(name)
    deadline = time.monotonic() + window
    while time.monotonic() < deadline and crashed < crashes:
        await asyncio.sleep(0.1)
        for name in names:
            if not suite.stack.services[name].running:
                crashed += 1
                await restart_disarmed(name)
    for name in names:
        process = suite.stack.services[name]
        if "EMPORIUM_FAILPOINTS" in process.env or not process.running:
            crashed += 0 if process.running else 1
            await restart_disarmed(name)
    result.faults += crashed


async def kill_broker(suite: FaultSuite, result: Result) -> None:
    await asyncio.to_thread(suite.broker.kill)
    result.faults += 1
    await asyncio.sleep(2)
    await asyncio.to_thread(suite.broker.start)


async def postgres_immediate(suite: FaultSuite, result: Result) -> None:
    await asyncio.to_thread(suite.postgres.kill)
    result.faults += 1
    await asyncio.sleep(2)
    await asyncio.to_thread(suite.postgres.start)


async def pause(suite: FaultSuite, result: Result, names: list[str], low: float, high: float) -> None:
    import signal

    for name in names:
        process = suite.stack.services[name]
        process.signal(signal.SIGSTOP)
        result.faults += 1
        await asyncio.sleep(suite.random.uniform(low, high))
        process.signal(signal.SIGCONT)


async def proxy_fault(suite: FaultSuite, result: Result, which: str, kind: str, seconds: float = 4.0) -> None:
    proxy = suite.kafka_proxy if which == "kafka" else suite.pg_proxy
    result.faults += 1
    if kind == "reset":
        for _ in range(3):
            proxy.reset_all()
            await asyncio.sleep(seconds / 3)
        return
    if kind == "latency":
        proxy.add_latency(0.2)
    else:
        proxy.blackhole()
    await asyncio.sleep(seconds)
    proxy.heal()


async def rewind(suite: FaultSuite, result: Result, groups: dict[str, list[str]], by: int = 40) -> None:
    """Duplicate delivery: stop the group's service, move its committed offsets back, restart."""
    for name, topics in groups.items():
        await asyncio.to_thread(suite.stack.services[name].terminate)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=suite.stack.kafka_bootstrap, group_id=name, enable_auto_commit=False
        )
        await consumer.start()
        try:
            partitions = [TopicPartition(t, p) for t in topics for p in range(TOPIC_PARTITIONS)]
            consumer.assign(partitions)
            offsets = {}
            for tp in partitions:
                committed = await consumer.committed(tp)
                if committed:
                    offsets[tp] = max(0, committed - by)
            if offsets:
                await consumer.commit(offsets)
        finally:
            await consumer.stop()
        result.faults += 1
        await suite.restart(name)


async def plant_poison(suite: FaultSuite, result: Result, topics: list[str]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=suite.stack.kafka_bootstrap)
    await producer.start()
    try:
        for topic in topics:
            value = f"poison {uuid.uuid4()} \x00 not an envelope".encode()
            suite.poison_values.add(value)
            await producer.send_and_wait(topic, key=b"poison", value=value)
            result.faults += 1
    finally:
        await producer.stop()

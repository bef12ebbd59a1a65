"""The fault-injection harness: the real system, a stream of orders, one fault at a time, and
the invariants checked afterwards against every service's own database.

Kafka and PostgreSQL are real processes with a fault proxy in front of each; every service
and the gateway reach them only through the proxies, so network faults hit real traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import signal
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
from emporium_events.failpoints import ENV as FAILPOINTS
from emporium_events.failpoints import FIRED
from emporium_kit.runtime import TOPIC_PARTITIONS

log = logging.getLogger("faults")

SETTLE_SECONDS = 30.0
CARDS = ["tok_visa"] * 6 + ["tok_chargeDeclined"]
INVARIANTS = ("terminal", "money", "stock", "outbox_dlq", "duplicates")
# How long one planned fault may take to happen (a failpoint to be reached, say) before the
# scenario is a harness error. Seen on the shared 2-core machine under load (average 10-17):
# a restart takes 5-25 s, 70 s at worst, and a crash at the 3rd hit came 37 s after the start.
FAULT_BOUND = 120.0
# A crash scenario's failpoint fires on a hit between 1 and this (the seed picks): when in the
# traffic it strikes is timing; that it strikes is not left to chance.
MAX_HIT = 3
# The load adds a product with fresh stock this often (3 products' stock lasts ~3 s at 12/s).
RESTOCK_SECONDS = 3.0
# Orders per second while faults outlast the load (enough to reach a failpoint's 3rd hit).
TRICKLE_RATE = 2.0


@dataclass
class Result:
    """One scenario's outcome. ``planned`` faults are what the scenario set out to inject,
    ``injected`` those the harness saw happen; a shortfall is a harness error (the scenario
    proved nothing), never an invariant violation (the system did something wrong)."""

    scenario: str
    brokers: int = 1
    replicas: int = 1
    orders: int = 0
    not_accepted: int = 0
    planned: int = 0
    injected: int = 0
    duplicates: int = 0
    violations: dict[str, list[str]] = field(default_factory=lambda: {name: [] for name in INVARIANTS})
    harness_errors: list[str] = field(default_factory=list)
    timeline: list[str] = field(default_factory=list)  # "+12.3s orders: crashed at ...": the faults' story
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
        # The seed picks the workload, victims' order and timing (when, which hit); never
        # whether a planned fault happens.
        self.random = random.Random(seed)
        # The shape of the stack start() runs, reported with every result.
        self.brokers = 1
        self.replicas = 1
        self.poison_values: set[bytes] = set()
        # Duplicates each service counted in the current scenario: per service the instance
        # watched (pid), its count when watching began and the last count read from it; and
        # what instances gone since (restarted or crashed) had counted.
        self._duplicates_watch: dict[str, tuple[int, float, float]] = {}
        self._duplicates_banked: dict[str, float] = {}
        self._timeline: list[str] = []
        self._scenario_started = time.monotonic()

    def note(self, event: str) -> None:
        """Add to the current scenario's timeline (reported in the JSON, printed on an error)."""
        self._timeline.append(f"+{time.monotonic() - self._scenario_started:.1f}s {event}")

    # ------------------------------------------------------------------ the system under test

    async def start(self) -> None:
        libs = await asyncio.to_thread(ensure_kafka_libs, cache_dir())
        kafka_front = free_port()
        self.broker = KafkaBroker(
            libs_dir=libs, data_dir=self.work_dir / "kafka", advertised_port=kafka_front
        )
        await asyncio.to_thread(self.broker.start)
        self.kafka_proxy = FaultProxy(listen_port=kafka_front, target_port=self.broker.port)
        await self.kafka_proxy.start()
        await self.start_postgres_and_stack(kafka_bootstrap=f"127.0.0.1:{kafka_front}", timeout=180)

    async def start_postgres_and_stack(
        self, *, kafka_bootstrap: str, timeout: float, replicas: int = 1
    ) -> None:
        """PostgreSQL behind its fault proxy, a database per process, then the stack on them and
        on `kafka_bootstrap` (already behind its proxies), and the harness's own clients."""
        pg_front = free_port()
        self.postgres = PostgresCluster(data_dir=self.work_dir / "pg" / "data")
        await asyncio.to_thread(self.postgres.init)
        # Durable settings (fsync, synchronous_commit on), as in production: with the tests' "fast"
        # settings a crash loses commits PostgreSQL already acknowledged, and no design survives that.
        await asyncio.to_thread(self.postgres.start)
        self.pg_proxy = FaultProxy(listen_port=pg_front, target_port=self.postgres.port)
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
            kafka_bootstrap=kafka_bootstrap,
            database_urls=urls,
            replicas=replicas,
        )
        await asyncio.to_thread(self.stack.start, timeout)
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

    async def _duplicates_of(self, name: str) -> float | None:
        """Duplicates the running instance of ``name`` has counted since it started (/metrics)."""
        try:
            text = (await self.http.get(f"{self.stack.service_url(name)}/metrics", timeout=2)).text
        except httpx.HTTPError:
            return None
        return sum(
            float(m.group(2))
            for m in re.finditer(rf"emporium_{name}_events_consumed_total{{([^}}]*)}} ([0-9.e+]+)", text)
            if 'outcome="duplicate"' in m.group(1)
        )

    async def _sample_duplicates(self) -> None:
        """Read every running service's duplicate count. A process's counters die with it, so
        this runs every second during a scenario and before each restart; an instance replaced
        since the last sample has its last count banked."""
        for name in SERVICES:
            process = self.stack.services[name]
            pid = process.pid if process.running else None
            value = await self._duplicates_of(name) if pid is not None else None
            if pid is None or value is None or process.pid != pid:
                continue  # nothing (or a stale answer) to learn from this instance now
            watched, base, last = self._duplicates_watch.get(name, (pid, 0.0, 0.0))
            if watched != pid:  # a new instance counts from zero
                self._duplicates_banked[name] = self._duplicates_banked.get(name, 0.0) + max(0.0, last - base)
                watched, base, last = pid, 0.0, 0.0
            self._duplicates_watch[name] = (pid, base, max(last, value))

    async def _start_counting_duplicates(self) -> None:
        self._duplicates_watch, self._duplicates_banked = {}, {}
        for name in SERVICES:
            process = self.stack.services[name]
            value = await self._duplicates_of(name)
            if process.pid is not None and value is not None:
                self._duplicates_watch[name] = (process.pid, value, value)

    async def _watch_duplicates(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            await self._sample_duplicates()

    async def _duplicates_in_scenario(self) -> int:
        await self._sample_duplicates()
        total = sum(self._duplicates_banked.values())
        total += sum(max(0.0, last - base) for _, base, last in self._duplicates_watch.values())
        return int(total)

    async def restart(self, name: str) -> None:
        """Restart a process (with whatever env it has now) and wait until it is ready."""
        if name in SERVICES:
            await self._sample_duplicates()
        await asyncio.to_thread(self.stack.services[name].restart, wait=True, timeout=90)

    async def crash_once(self, name: str, point: str, hit: int, bound: float) -> str | None:
        """Restart ``name`` armed to SIGKILL itself at the ``hit``-th pass of ``point`` and wait
        (at most ``bound`` seconds) until it has. None if it did, else what went wrong. The
        process is left dead: the next call re-arms it, ``disarm`` brings it back clean."""
        process = self.stack.services[name]
        spec = f"{point}@{hit}"
        await self._sample_duplicates()
        process.env[FAILPOINTS] = spec
        await asyncio.to_thread(process.terminate)
        await asyncio.to_thread(process.start)  # not waiting for ready: it may crash on the way
        pid, deadline = process.pid, time.monotonic() + bound
        self.note(f"{name}: started armed {spec} (pid {pid})")
        while process.running:
            if time.monotonic() > deadline:
                return f"{name}: {spec} did not fire within {bound:.0f}s"
            await asyncio.sleep(0.1)
        self.note(f"{name}: died (code {process.returncode})")
        with contextlib.suppress(RuntimeError):  # "exited": it did; this collects its last output
            await asyncio.to_thread(process.check_alive)
        if process.returncode != -signal.SIGKILL:
            return f"{name} (armed {spec}) exited with code {process.returncode}:\n{process.tail(10)}"
        if f"{FIRED} {spec} pid={pid}" not in process.tail(200):
            return f"{name} (armed {spec}) was SIGKILLed, but not by its failpoint"
        return None

    async def disarm(self, name: str) -> None:
        """Bring ``name`` back without failpoints (restarted if it was armed or is down)."""
        process = self.stack.services[name]
        if process.env.pop(FAILPOINTS, None) is not None or not process.running:
            await self.restart(name)
            self.note(f"{name}: ready, disarmed")

    async def _restore(self) -> None:
        """Whatever a scenario did (or failed to undo), the next one starts on a whole system."""
        self.kafka_proxy.heal()
        self.pg_proxy.heal()
        if not self.postgres.running:
            await asyncio.to_thread(self.postgres.start)
        if not self.broker.running:
            await asyncio.to_thread(self.broker.start)
        for name, process in self.stack.services.items():
            process.signal(signal.SIGCONT)
            await self.disarm(name)

    # ------------------------------------------------------------------ one scenario

    async def run(self, scenario: Scenario) -> Result:
        result = Result(scenario.name, brokers=self.brokers, replicas=self.replicas)
        started = self._scenario_started = time.monotonic()
        self._timeline = result.timeline
        products: dict[str, int] = {}  # product id -> stock it started with

        async def new_product() -> str | None:
            """A product with fresh stock, or None (and why, in the log) if the system refused."""
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
            if r is None or r.status_code != 201:
                log.info("product not created: %s", r and r.text)
                return None
            pid: str = r.json()["id"]
            stock = self.random.randint(15, 30)
            r = await self._call(
                "PUT", f"/api/v1/inventory/{pid}", headers=self.admin, json={"on_hand": stock}
            )
            if r is None or r.status_code != 200:
                log.info("stock of %s not set: %s", pid, r and r.text)
                return None  # no order will name it, so its stock is nobody's business
            products[pid] = stock
            return pid

        for _ in range(3):
            if await new_product() is None:
                raise RuntimeError("the scenario's products could not be created (see the log)")
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
            lines = self.random.sample(list(products)[-3:], self.random.choice([1, 1, 2]))
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

        injecting = asyncio.Event()

        async def load() -> None:
            # Orders keep coming until every planned fault is done, so no fault waits for
            # traffic that has stopped (a failpoint is only reached by work): after the load,
            # a trickle (at the full rate, a 100 s crash series left a backlog of 2,000 orders
            # that did not settle in time). A new product with fresh stock every few seconds
            # keeps the mix (confirmed, out of stock, declined); orders name the newest three.
            tasks: list[asyncio.Task[object]] = []
            now = time.monotonic()
            deadline, restock = now + self.load_seconds, now + RESTOCK_SECONDS
            while (loading := time.monotonic() < deadline) or injecting.is_set():
                tasks.append(asyncio.create_task(one_order()))
                if time.monotonic() >= restock:
                    tasks.append(asyncio.create_task(new_product()))
                    restock += RESTOCK_SECONDS
                await asyncio.sleep(1 / (self.rate if loading else TRICKLE_RATE))
            await asyncio.gather(*tasks)

        injecting.set()
        load_task = asyncio.create_task(load())
        watch_task = asyncio.create_task(self._watch_duplicates())
        try:
            await asyncio.sleep(self.random.uniform(0.5, max(0.6, self.load_seconds / 3)))
            await scenario.inject(self, result)
        except Exception as exc:  # the harness failed, not the system: say so, and go on
            log.exception("scenario %r: injecting failed", scenario.name)
            result.harness_errors.append(f"injecting failed: {exc!r}")
        finally:
            injecting.clear()
            await self._restore()
        if result.injected != result.planned or not result.planned:
            result.harness_errors.append(f"injected {result.injected} of {result.planned} planned faults")
        await load_task

        try:
            await self._check(result, scenario, products, customers, keys, dead_before)
        finally:
            watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch_task
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

        # 5. duplicates delivered in the duplicate scenarios, and no duplicate effect anywhere.
        # Whether a duplicate was delivered is asked only once a duplicate-producing fault was
        # injected: without one, its absence says nothing about the system (a harness error
        # already says the fault is missing).
        result.duplicates += await self._duplicates_in_scenario()
        problems = []
        if scenario.duplicates_expected and result.injected and result.duplicates == 0:
            problems.append(f"no duplicate delivery was observed after {result.injected} faults")
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


def _state(pid: int | None) -> str:
    """A process's state letter from /proc (``T``: stopped), or "" if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return ""


async def kill_and_restart(suite: FaultSuite, result: Result, names: list[str]) -> None:
    """kill -9 each of ``names`` in turn (one fault each), restarting it after a pause."""
    result.planned += len(names)
    for name in names:
        await asyncio.sleep(suite.random.uniform(0.2, 1.0))
        process = suite.stack.services[name]
        if not process.running:
            result.harness_errors.append(f"{name} was not running when it was to be killed")
            continue
        await asyncio.to_thread(process.kill)
        if process.returncode == -signal.SIGKILL:
            result.injected += 1
        else:
            result.harness_errors.append(f"{name} ended with {process.returncode}, not by SIGKILL")
        await asyncio.sleep(suite.random.uniform(0.2, 1.5))
        await suite.restart(name)


async def crash_at(
    suite: FaultSuite,
    result: Result,
    point: str,
    names: list[str],
    crashes: int = 2,
    bound: float = FAULT_BOUND,
) -> None:
    """Crash each of ``names`` ``crashes`` times at the failpoint ``point`` (the process SIGKILLs
    itself there): restart it armed to fire on a hit the seed picks, wait until it died by it,
    re-arm it for the next crash, and restart it disarmed after the last. One service at a
    time, so the others keep its traffic coming (side by side, three crash-looping services
    starved each other past 90 s on the shared machine). A crash that does not come within
    ``bound`` seconds ends that service's series (the shortfall is a harness error)."""
    result.planned += crashes * len(names)
    for name in names:
        try:
            for _ in range(crashes):
                hit = suite.random.randint(1, MAX_HIT)
                error = await suite.crash_once(name, point, hit, bound)
                if error:
                    result.harness_errors.append(error)
                    break
                result.injected += 1
        finally:
            await suite.disarm(name)


async def kill_broker(suite: FaultSuite, result: Result) -> None:
    result.planned += 1
    if suite.broker.running:
        await asyncio.to_thread(suite.broker.kill)
        result.injected += 0 if suite.broker.running else 1
    else:
        result.harness_errors.append("the broker was not running when it was to be killed")
    await asyncio.sleep(2)
    await asyncio.to_thread(suite.broker.start)


async def postgres_immediate(suite: FaultSuite, result: Result) -> None:
    result.planned += 1
    if suite.postgres.running:
        await asyncio.to_thread(suite.postgres.kill)
        result.injected += 0 if suite.postgres.running else 1
    else:
        result.harness_errors.append("PostgreSQL was not running when it was to be shut down")
    await asyncio.sleep(2)
    await asyncio.to_thread(suite.postgres.start)


async def pause(suite: FaultSuite, result: Result, names: list[str], low: float, high: float) -> None:
    """SIGSTOP each of ``names`` in turn for low..high seconds (one fault each)."""
    result.planned += len(names)
    for name in names:
        process = suite.stack.services[name]
        process.signal(signal.SIGSTOP)
        for _ in range(20):  # signal delivery is asynchronous
            if _state(process.pid) == "T":
                result.injected += 1
                break
            await asyncio.sleep(0.05)
        else:
            result.harness_errors.append(f"{name} did not stop on SIGSTOP (state {_state(process.pid)!r})")
        await asyncio.sleep(suite.random.uniform(low, high))
        process.signal(signal.SIGCONT)


async def proxy_fault(
    suite: FaultSuite, result: Result, which: str, kind: str, seconds: float = 4.0, resets: int = 3
) -> None:
    """A fault window in the proxy in front of Kafka or PostgreSQL: ``resets`` resets of every
    open connection (one fault each, if it found connections to reset), or ``seconds`` of
    latency or blackhole (one fault, if traffic met it)."""
    proxy = suite.kafka_proxy if which == "kafka" else suite.pg_proxy
    if kind == "reset":
        result.planned += resets
        for n in range(resets):
            if proxy.reset_all():
                result.injected += 1
            else:
                result.harness_errors.append(f"reset {n + 1}: no open {which} connection to reset")
            await asyncio.sleep(seconds / resets)
        return
    result.planned += 1
    held_before = proxy.faulted
    if kind == "latency":
        proxy.add_latency(0.2)
    else:
        proxy.blackhole()
    try:
        await asyncio.sleep(seconds)
    finally:
        proxy.heal()
    if proxy.faulted > held_before:
        result.injected += 1
    else:
        result.harness_errors.append(f"{which} {kind}: no traffic passed the proxy in {seconds:.0f}s")


async def rewind(suite: FaultSuite, result: Result, groups: dict[str, list[str]], by: int = 40) -> None:
    """Duplicate delivery: stop the group's service, move its committed offsets back, restart
    (one fault per group, if it had committed offsets to move)."""
    result.planned += len(groups)
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
        if offsets:
            result.injected += 1
        else:
            result.harness_errors.append(f"{name}: no committed offset on {', '.join(topics)} to rewind")
        await suite.restart(name)


async def plant_poison(suite: FaultSuite, result: Result, topics: list[str]) -> None:
    result.planned += len(topics)
    producer = AIOKafkaProducer(bootstrap_servers=suite.stack.kafka_bootstrap)
    await producer.start()
    try:
        for topic in topics:
            value = f"poison {uuid.uuid4()} \x00 not an envelope".encode()
            suite.poison_values.add(value)
            await producer.send_and_wait(topic, key=b"poison", value=value)
            result.injected += 1
    finally:
        await producer.stop()

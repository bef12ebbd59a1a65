"""`make bench`: the whole system under open-loop load, against the machine's own ceilings.

    uv run --group bench python bench/run.py [--quick] [--out bench/results] [--brokers 3 --replicas 2]

``--brokers`` / ``--replicas`` (default ``EMPORIUM_BROKERS`` / ``EMPORIUM_REPLICAS``, else 1): the
shape of every stack it starts, as ``make run`` takes them, so 1x1 and 3x2 can be measured back to
back (``make bench`` then ``EMPORIUM_BROKERS=3 EMPORIUM_REPLICAS=2 make bench BENCH_FLAGS="--out
bench/results-3x2"``). CPU per order is summed per service over its replicas, and over the
Kafka nodes, so the two reports compare row by row.

Brings up the local stack (fsync on, as `make run`) and drives it with vegeta (``vegeta.py``,
built once from the Go module proxy): an open-loop, constant-rate generator whose CPU is counted
apart, each order with its own customer token and Idempotency-Key, latency from each request's
scheduled start. Three times over it searches the maximum sustainable order rate (completion
p99 <= 500 ms, every order done shortly after the step, outbox and consumer lag back to ~0), then
measures three times at 70 % of the median maximum; every headline figure is the median of its
three runs (min and max beside it). Then browsing and a 90/10 mix, and the references, in the
same run: the gateway against the services it fronts (a pass-through route, and the product
list against catalog + inventory called directly; vegeta, same rates), the same saga as plain
asyncio + psycopg (the ceiling) and as a DBOS durable workflow (the peer) on the same
PostgreSQL (``peers.py``), pgbench's order + outbox write, and Kafka's own end-to-end latency
tool. Writes ``results.json``, ``report.md`` and PNG plots.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
import gateway_refs
import hops
import loadgen
import report
import vegeta

from emporium_devstack.jaeger import jaeger_built
from emporium_devstack.stack import SERVICES, Stack
from emporium_devstack.testing import cache_dir, repo_root

TICKS = os.sysconf("SC_CLK_TCK")
# CPU rows that are not the system under test: summed apart, never in the system's total.
LOAD_GENERATOR = "load generator (vegeta)"
HARNESS = "bench harness (python)"
NOT_THE_SYSTEM = (LOAD_GENERATOR, HARNESS)
P99_LIMIT_MS = 500.0  # "sustainable": completion p99 at most this
SETTLE_SECONDS = 5.0  # after the last order is done, outbox and consumer lag must be ~0 within this


# ---------------------------------------------------------------------- CPU accounting


def _cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """utime + stime of ``pid``; with ``reaped``, plus those of its children that exited and were
    waited for (cutime + cstime): a PostgreSQL backend that ends between two snapshots must not
    take its CPU with it (that made the PostgreSQL row negative)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICKS


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            continue
    return found


@dataclass
class Processes:
    stack: Stack

    def snapshot(self) -> dict[str, float]:
        cpu: dict[str, float] = {}
        for proc in self.stack.processes:  # every replica, summed under its service's name
            if proc.pid:
                service = proc.name.rsplit("-", 1)[0] if proc.name[-1].isdigit() else proc.name
                cpu[service] = cpu.get(service, 0.0) + _cpu_seconds(proc.pid)
        if self.stack.kafka is not None and self.stack.kafka.pids:
            cpu["kafka"] = sum(_cpu_seconds(pid) for pid in self.stack.kafka.pids)
        if self.stack.postgres is not None and self.stack.postgres.pid:
            root = self.stack.postgres.pid
            cpu["postgresql"] = _cpu_seconds(root, reaped=True) + sum(
                _cpu_seconds(c) for c in _children(root)
            )
        if self.stack.smtp is not None and self.stack.smtp.pid:
            cpu["smtp sink"] = _cpu_seconds(self.stack.smtp.pid)  # the devstack's mail sink
        if self.stack.jaeger is not None and self.stack.jaeger.pid:
            cpu["jaeger"] = _cpu_seconds(self.stack.jaeger.pid)
        cpu[HARNESS] = time.process_time()  # completions polling, lag probes: not the load
        return cpu

    @staticmethod
    def per_order(before: dict[str, float], after: dict[str, float], orders: int) -> dict[str, float]:
        return {
            name: round((after[name] - before.get(name, 0.0)) / max(orders, 1) * 1000, 3) for name in after
        }  # CPU milliseconds per order (or per request)


def system_total(cpu: dict[str, float]) -> float:
    """CPU ms per order of the system under test: every process but the load generator and harness."""
    return round(sum(v for k, v in cpu.items() if k not in NOT_THE_SYSTEM), 3)


# ---------------------------------------------------------------------- completion times

# Terminal history rows of the given orders. ``order_history.order_id`` is indexed (0001_initial)
# and compared as a uuid (a ``::text`` cast on the column would scan the whole table every poll);
# ``Bench.completion_plan`` records the plan to show it.
COMPLETED = sa.text(
    "SELECT order_id::text, min(extract(epoch FROM at)) FROM order_history "
    "WHERE order_id = ANY(CAST(:ids AS uuid[])) AND status IN ('CONFIRMED', 'CANCELLED') GROUP BY 1"
)


# ---------------------------------------------------------------------- one measured step


class Bench:
    def __init__(self, stack: Stack, shop: loadgen.Shop, generator: Path, seed: int = 11) -> None:
        self.stack = stack
        self.shop = shop
        self.generator = generator
        self.rng = random.Random(seed)
        self.orders_db = sa.create_engine(stack.database_url("orders"))
        self.dbs = {name: sa.create_engine(stack.database_url(name)) for name in SERVICES}
        self.processes = Processes(stack)
        self.recent_orders: list[str] = []  # accepted order ids, for the pass-through reference
        self._admin: Any = None
        self._probe: Any = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.stack.kafka_bootstrap)
        self._probe = AIOKafkaConsumer(bootstrap_servers=self.stack.kafka_bootstrap)
        await self._admin.start()
        await self._probe.start()

    async def close(self) -> None:
        if self._probe is not None:
            await self._probe.stop()
        if self._admin is not None:
            await self._admin.close()
        for engine in (self.orders_db, *self.dbs.values()):
            engine.dispose()

    async def attack(self, targets: list[vegeta.Target], rate: float, seconds: float) -> loadgen.Run:
        found = await vegeta.attack(self.generator, targets, rate=rate, seconds=seconds)
        return loadgen.run_of(rate, seconds, found.scheduled(), found.cpu_seconds)

    def completions(self, samples: list[loadgen.Sample], wait: float) -> tuple[dict[str, float], int]:
        """Seconds from each order's scheduled POST to its terminal status (from the orders
        database, so following the orders adds no load), and how many were not done in time."""
        ids = {s.order_id: s for s in samples if s.order_id}
        done: dict[str, float] = {}
        deadline = time.time() + wait
        while True:
            missing = [oid for oid in ids if oid not in done]
            if missing:
                with self.orders_db.connect() as conn:
                    done.update((oid, float(at)) for oid, at in conn.execute(COMPLETED, {"ids": missing}))
            if len(done) == len(ids) or time.time() > deadline:
                break
            time.sleep(0.2)
        return {oid: at - ids[oid].scheduled for oid, at in done.items()}, len(ids) - len(done)

    def completion_plan(self) -> dict[str, Any]:
        """EXPLAIN of the completion query over the recent orders, as planned and with sequential
        scans disabled: on a small table the planner rightly prefers a scan, so the second plan
        is the one that shows the query can use the index (a cast on the column could not)."""
        ids = self.recent_orders[-2000:] or [str(uuid.uuid4())]
        plans = {}
        with self.orders_db.connect() as conn:
            rows = conn.execute(sa.text("SELECT count(*) FROM order_history")).scalar_one()
            for name, seqscan in (("as_planned", "on"), ("seqscan_off", "off")):
                conn.execute(sa.text(f"SET enable_seqscan = {seqscan}"))
                plans[name] = [
                    line if len(line) < 160 else line[:150] + " ...)"
                    for (line,) in conn.execute(sa.text(f"EXPLAIN {COMPLETED.text}"), {"ids": ids})
                ]
            conn.execute(sa.text("RESET enable_seqscan"))
        return {
            "order_history_rows": rows,
            "ids": len(ids),
            "plans": plans,
            "index_usable": not any("Seq Scan" in line for line in plans["seqscan_off"]),
        }

    def relay_lag(self, since: float) -> dict[str, Any]:
        lags = []
        for engine in self.dbs.values():
            with engine.connect() as conn:
                lags += [
                    float(v)
                    for (v,) in conn.execute(
                        sa.text(
                            "SELECT extract(epoch FROM sent_at - created_at) FROM outbox "
                            "WHERE created_at >= to_timestamp(:t) AND sent_at IS NOT NULL"
                        ),
                        {"t": since},
                    )
                ]
        return loadgen.summary_ms(lags)

    def backlog(self) -> int:
        total = 0
        for engine in self.dbs.values():
            with engine.connect() as conn:
                total += conn.execute(
                    sa.text("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
                ).scalar_one()
        return total

    async def consumer_lag(self) -> dict[str, int]:
        lag = {}
        for group in ("inventory", "payments", "orders", "notifications"):
            committed = await self._admin.list_consumer_group_offsets(group)
            ends = await self._probe.end_offsets(list(committed))
            lag[group] = sum(
                max(0, ends[tp] - meta.offset) for tp, meta in committed.items() if meta.offset >= 0
            )
        return lag

    async def settle(self, orders: int) -> dict[str, Any]:
        """Wait up to SETTLE_SECONDS for the outbox backlog to be empty and the consumer lag ~0
        (at most 1 % of the step's orders, at least 5: consumers commit offsets every 250 ms, so
        the committed lag of a healthy group trails by a few events)."""
        tolerance = max(5, orders // 100)
        began = time.monotonic()
        while True:
            backlog = await asyncio.to_thread(self.backlog)
            lag = await self.consumer_lag()
            waited = time.monotonic() - began
            settled = backlog == 0 and sum(lag.values()) <= tolerance
            if settled or waited > SETTLE_SECONDS:
                return {
                    "settled": settled,
                    "seconds": round(waited, 2),
                    "outbox_backlog": backlog,
                    "consumer_lag": lag,
                    "lag_tolerance": tolerance,
                }
            await asyncio.sleep(0.25)

    async def checkout_step(
        self, rate: float, seconds: float, *, wait: float = 5.0, detail: bool = False
    ) -> dict[str, Any]:
        """One step at ``rate`` orders/s for ``seconds``. ``detail``: also the per-second timeline
        and the hop-by-hop breakdown (database reads after the step, not counted)."""
        since = time.time()
        targets = self.shop.checkout_targets(round(rate * seconds), self.rng)
        cpu_before = self.processes.snapshot()
        run = await self.attack(targets, rate, seconds)
        done, unfinished = await asyncio.to_thread(self.completions, run.samples, wait)
        cpu_after = self.processes.snapshot()
        cpu_before[LOAD_GENERATOR], cpu_after[LOAD_GENERATOR] = 0.0, run.generator_cpu_seconds
        posts = run.of("order")
        accepted = [s for s in posts if s.status == 202]
        self.recent_orders = (self.recent_orders + [s.order_id for s in accepted if s.order_id])[-5000:]
        settle = await self.settle(len(accepted))
        completion = loadgen.summary_ms(list(done.values()))
        cpu = self.processes.per_order(cpu_before, cpu_after, len(accepted))
        result: dict[str, Any] = {
            "offered_rate": rate,
            "seconds": seconds,
            "accepted": len(accepted),
            "errors": len(posts) - len(accepted),
            # Which statuses the errors were (0: no answer in time): a step refused for errors says why.
            "error_statuses": dict(Counter(str(s.status) for s in posts if s.status != 202)),
            "unfinished": unfinished,
            "late_starts": run.late_starts,
            "achieved_rate": round(len(done) / max(max(s.finished for s in posts) - since, 1e-9), 1)
            if posts
            else 0,
            "post_ms": loadgen.summary_ms([s.latency for s in posts]),
            "completion_ms": completion,
            "outbox_relay_lag_ms": await asyncio.to_thread(self.relay_lag, since),
            "settle": settle,
            "consumer_lag_after": settle["consumer_lag"],
            "outbox_backlog_after": settle["outbox_backlog"],
            "cpu_ms_per_order": cpu,
            "cpu_ms_per_order_system": system_total(cpu),
        }
        if detail:
            result["timeline"] = report.timeline(run.samples, done)
            result["hops_ms"] = await asyncio.to_thread(
                hops.breakdown, self.dbs, [s for s in posts if s.order_id in done]
            )
        result["why_not"] = why_not = unsustainable(result, posts=len(posts), late=run.late_starts)
        result["sustainable"] = not why_not
        print(
            f"  checkout {rate:6.1f}/s: accepted {len(accepted)}, errors {result['errors']}"
            f"{' ' + str(result['error_statuses']) if result['errors'] else ''}, "
            f"POST p99 {result['post_ms']['p99']} ms, completion p50 {completion['p50']} p99 {completion['p99']} ms, "
            f"unfinished {unfinished}, settled in {settle['seconds']} s: {settle['settled']}, "
            f"CPU {result['cpu_ms_per_order_system']} ms/order (+ vegeta {cpu[LOAD_GENERATOR]}) "
            f"-> {'ok' if result['sustainable'] else 'NOT sustainable: ' + ', '.join(why_not)}",
            flush=True,
        )
        return result

    async def browse_step(self, rate: float, seconds: float, mixed: bool = False) -> dict[str, Any]:
        count = round(rate * seconds)
        targets = (
            self.shop.mixed_targets(count, self.rng) if mixed else self.shop.browse_targets(count, self.rng)
        )
        cpu_before = self.processes.snapshot()
        started = time.time()
        run = await self.attack(targets, rate, seconds)
        cpu_after = self.processes.snapshot()
        reads = [s for s in run.samples if s.kind != "order"]
        elapsed = max((s.finished for s in run.samples), default=started) - started
        result = {
            "offered_rate": rate,
            "seconds": seconds,
            "reads": len(reads),
            "read_errors": sum(1 for s in reads if s.status != 200),
            "reads_per_second": round(len(reads) / max(elapsed, 1e-9), 1),
            "read_ms": loadgen.summary_ms([s.latency for s in reads]),
            "by_kind_ms": {
                k: loadgen.summary_ms([s.latency for s in reads if s.kind == k])
                for k in ("list", "search", "product")
            },
            "late_starts": run.late_starts,
            "load_generator_cpu_ms_per_request": round(
                run.generator_cpu_seconds / max(len(run.samples), 1) * 1000, 3
            ),
        }
        if not mixed:
            result["cpu_ms_per_read"] = self.processes.per_order(cpu_before, cpu_after, len(reads))
        if mixed:
            orders = run.of("order")
            done, unfinished = await asyncio.to_thread(self.completions, orders, 5.0)
            result |= {
                "orders": len(orders),
                "post_ms": loadgen.summary_ms([s.latency for s in orders]),
                "completion_ms": loadgen.summary_ms(list(done.values())),
                "unfinished": unfinished,
            }
        print(
            f"  {'mixed' if mixed else 'browse'} {rate:6.1f}/s: {result['reads_per_second']} reads/s, "
            f"p50 {result['read_ms']['p50']} p99 {result['read_ms']['p99']} ms, errors {result['read_errors']}",
            flush=True,
        )
        return result


def unsustainable(step: dict[str, Any], *, posts: int, late: int) -> list[str]:
    """Why a checkout step is not sustainable (nothing: it is)."""
    p99 = step["completion_ms"]["p99"]
    checks = {
        "no order accepted": not step["accepted"],
        f"errors {step['errors']} > 1 %": step["errors"] > 0.01 * posts,
        f"{step['unfinished']} orders not terminal in time": step["unfinished"] > 0,
        f"completion p99 {p99} ms > {P99_LIMIT_MS:g}": p99 is None or p99 > P99_LIMIT_MS,
        f"{late} late starts > 1 %": late > 0.01 * posts,
        "backlog left": not step["settle"]["settled"],
    }
    return [reason for reason, failed in checks.items() if failed]


async def find_max_rate(
    bench: Bench, *, start: float, step_seconds: float, ceiling: float
) -> tuple[float, list[dict[str, Any]]]:
    """Steps up by 1.5x from ``start`` until a step is not sustainable, then halves the gap
    between the last good and the first bad rate twice (or until it is under 5 %)."""
    steps = []
    rate, good, bad = start, 0.0, None
    while rate <= ceiling:
        result = await bench.checkout_step(rate, step_seconds)
        steps.append(result)
        if not result["sustainable"]:
            bad = rate
            break
        good = rate
        rate = round(rate * 1.5, 1)
        await asyncio.sleep(2)
    for _ in range(2 if bad else 0):  # refine between the last good and the first bad rate
        mid = round((good + bad) / 2, 1)
        if mid - good < max(2.0, good * 0.05):
            break
        await asyncio.sleep(2)
        result = await bench.checkout_step(mid, step_seconds)
        steps.append(result)
        good, bad = (mid, bad) if result["sustainable"] else (good, mid)
    return good, steps


def headline(searches: list[float], at_70: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures the report leads with, each as min / median / max over the three runs."""
    names = sorted({name for run in at_70 for name in run["cpu_ms_per_order"]})
    return {
        "max_sustainable_orders_per_second": loadgen.spread(searches),
        "cpu_ms_per_order_system_at_70": loadgen.spread([r["cpu_ms_per_order_system"] for r in at_70]),
        "cpu_ms_per_order_at_70": {
            name: loadgen.spread([r["cpu_ms_per_order"].get(name) for r in at_70]) for name in names
        },
        "post_p99_ms_at_70": loadgen.spread([r["post_ms"]["p99"] for r in at_70]),
        "completion_p50_ms_at_70": loadgen.spread([r["completion_ms"]["p50"] for r in at_70]),
        "completion_p99_ms_at_70": loadgen.spread([r["completion_ms"]["p99"] for r in at_70]),
        "sustainable_at_70": [r["sustainable"] for r in at_70],
    }


# ---------------------------------------------------------------------- the whole run


def machine() -> dict[str, Any]:
    def version(cmd: list[str]) -> str:
        try:
            return (
                subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
            )
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unknown"

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": version(["pg_config", "--version"]),
        "java": subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0],
        "kafka": "4.1.2",
    }


# The shape of every stack the benchmark starts (--brokers, --replicas; set in __main__).
SHAPE = {"brokers": 1, "replicas": 1}


def _stack(work: Path, **options: Any) -> Stack:
    """A stack of the benchmark's own: free ports, quiet, in ``work``, of the run's shape."""
    return Stack(
        root=repo_root(),
        cache_dir=cache_dir(),
        work_dir=work,
        free_ports=True,
        echo=False,
        log_level="WARNING",
        **SHAPE,
        **options,
    )


async def main(args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    print("vegeta (built once into .cache/tools) ...", flush=True)
    generator = await asyncio.to_thread(vegeta.ensure_vegeta, cache_dir())
    work = Path(tempfile.mkdtemp(prefix="emporium-bench-"))
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {
            "quick": args.quick,
            "runs": args.runs,
            "step_seconds": args.step_seconds,
            "measure_seconds": args.measure_seconds,
            "postgres_fsync": True,
            "kafka_brokers": SHAPE["brokers"],
            "service_replicas": SHAPE["replicas"],
            "load": f"vegeta {vegeta.VERSION}, open loop at a constant rate, latency from each request's "
            "scheduled start",
            "sustainable": f"completion p99 <= {P99_LIMIT_MS:g} ms, errors and late starts <= 1 %, every "
            f"order terminal within 5 s of its step, outbox backlog 0 and consumer lag ~0 within "
            f"{SETTLE_SECONDS:g} s",
        },
    }
    stack = _stack(work)
    phases: dict[str, float] = {}
    results["phase_seconds"] = phases

    def phase(name: str) -> None:
        """Seconds from the start of the run to the start of each phase (for the time budget)."""
        phases[name] = round(time.monotonic() - began, 1)
        print(f"[{phases[name]:7.1f} s] {name} ...", flush=True)

    phase(f"starting the stack in {work}")
    await asyncio.to_thread(stack.start, 180)
    best = args.start_rate
    try:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30, limits=limits) as http:
            shop = await loadgen.Shop.prepare(http, stack.admin_email, stack.admin_password)
        bench = Bench(stack, shop, generator)
        await bench.start()
        try:
            phase("warming up")
            await bench.checkout_step(10, 3)
            await bench.browse_step(50, 3)

            maxima: list[float] = []
            results["search"], results["searches"] = [], []
            start = args.start_rate
            for n in range(args.runs):
                phase(f"searching the maximum sustainable order rate ({n + 1} of {args.runs})")
                found, steps = await find_max_rate(
                    bench, start=start, step_seconds=args.step_seconds, ceiling=args.ceiling
                )
                maxima.append(found)
                results["search"] += steps
                results["searches"].append({"max": found, "steps": len(steps)})
                # The next search starts two steps below the median so far: same rule, fewer steps.
                start = max(args.start_rate, round(statistics.median(maxima) / 1.5**2, 1))
                await asyncio.sleep(2)
            best = statistics.median(maxima)
            results["max_sustainable_orders_per_second"] = best
            # Nothing sustainable at all: 70 % of the lowest rate tried, so the figures still exist.
            rate = round(0.7 * (best or min(step["offered_rate"] for step in results["search"])), 1)
            runs = []
            for n in range(args.runs):
                phase(f"at 70 % of {best}: {rate} orders/s ({n + 1} of {args.runs})")
                runs.append(await bench.checkout_step(rate, args.measure_seconds, detail=n == 0))
                await asyncio.sleep(2)
            results["at_70_runs"] = runs
            # The run of median system CPU stands for "70 %" where one run is shown (plots, compare.py).
            results["at_70"] = sorted(runs, key=lambda r: r["cpu_ms_per_order_system"])[len(runs) // 2]
            results["headline"] = headline(maxima, runs)
            results["completion_query_plan"] = await asyncio.to_thread(bench.completion_plan)
            if args.profile:
                results["profile"] = await profile_at(bench, rate, args, out)
            phase("browsing and the mix")
            results["browse"] = await bench.browse_step(args.browse_rate, args.measure_seconds)
            await asyncio.sleep(2)
            results["mixed"] = await bench.browse_step(args.browse_rate, args.measure_seconds, mixed=True)
            await asyncio.sleep(2)
            phase("the gateway against the services it fronts (vegeta, same rates)")
            try:
                results["gateway_references"] = await gateway_refs.measure_all(
                    bench, rates=args.reference_rates, seconds=args.reference_seconds
                )
            except Exception as exc:  # a reference that fails is reported, the run goes on
                results["gateway_references"] = {"error": repr(exc)}
        finally:
            await bench.close()

        phase("reference measurements")
        results["references"] = await asyncio.to_thread(references, stack, args)
        phase("peers: the same saga as plain asyncio + psycopg and as a DBOS workflow")
        results["peers"] = await asyncio.to_thread(peer_references, stack, args)
    finally:
        await asyncio.to_thread(stack.stop)
    if args.tracing:
        phase("tracing cost")
        results["tracing"] = await tracing_cost(round(0.5 * (best or args.start_rate), 1), args, generator)
    results["wall_seconds"] = round(time.monotonic() - began)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    report.write(results, out)
    print(
        f"\nwrote {out / 'report.md'}, {out / 'results.json'} and plots ({results['wall_seconds']} s)",
        flush=True,
    )
    return 0


async def profile_at(bench: Bench, rate: float, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """py-spy on every service while vegeta drives ``rate`` orders/s (70 % of the maximum)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_profile", Path(__file__).with_name("profile.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print(f"profiling at {rate} orders/s ...", flush=True)
    return dict(await module.record(bench, rate=rate, seconds=args.measure_seconds, out=out / "profile"))


async def tracing_cost(rate: float, args: argparse.Namespace, generator: Path) -> dict[str, Any]:
    """CPU per order with tracing disabled (``OTEL_SDK_DISABLED``), with span export off and on (to
    a real Jaeger, sampling 1.0), each on a fresh stack at the same offered rate. "Off" is how the
    stack runs without an OTLP endpoint: spans are still made (trace context must flow), just not
    exported. The arms run in the order A B C C B A and each figure is the mean of its two runs:
    one pass in one order measured a steady drift (every process, PostgreSQL and Kafka included,
    got cheaper from the first arm to the last), which the mirrored order cancels."""
    found: dict[str, Any] = {"rate": rate, "order": "A B C C B A, mean of two runs each"}
    if not jaeger_built(cache_dir()):
        found["skipped"] = "Jaeger is not built here (no Go toolchain)"
        return found
    arms = (
        ("sdk_disabled", False, {"OTEL_SDK_DISABLED": "true"}),
        ("exporter_off", False, {}),
        ("exporter_on", True, {}),
    )
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key, _, _ in arms}
    for key, observe, env in (*arms, *reversed(arms)):
        runs[key].append(await _tracing_arm(key, rate, args, generator, observe=observe, env=env))
    for key, measured in runs.items():
        names = {name for run in measured for name in run["cpu_ms_per_order"]}
        found[key] = {
            "cpu_ms_per_order": {
                name: round(
                    sum(run["cpu_ms_per_order"].get(name, 0.0) for run in measured) / len(measured), 3
                )
                for name in sorted(names)
            },
            "completion_ms": measured[-1]["completion_ms"],
            "runs": measured,
        }
    return found


async def _tracing_arm(
    key: str,
    rate: float,
    args: argparse.Namespace,
    generator: Path,
    *,
    observe: bool,
    env: dict[str, str],
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"emporium-bench-{key}-"))
    # No Prometheus: its scrapes would cost the services CPU in one arm only.
    stack = _stack(work, observe=observe, monitor=False, env=env)
    print(f"tracing cost, {key.replace('_', ' ')}: {rate}/s ...", flush=True)
    await asyncio.to_thread(stack.start, 180)
    try:
        async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as http:
            shop = await loadgen.Shop.prepare(http, stack.admin_email, stack.admin_password)
        bench = Bench(stack, shop, generator)
        await bench.start()
        try:
            await bench.checkout_step(10, 5)
            step = await bench.checkout_step(rate, args.measure_seconds)
            return {k: step[k] for k in ("accepted", "completion_ms", "cpu_ms_per_order", "sustainable")}
        finally:
            await bench.close()
    finally:
        await asyncio.to_thread(stack.stop)


def references(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    try:
        import references as refs
    except ImportError as exc:  # the module is optional while it is being written
        return {"error": f"references unavailable: {exc}"}
    found: dict[str, Any] = {}
    seconds = 5 if args.quick else 10
    assert stack.postgres is not None and stack.kafka is not None
    try:
        stack.postgres.ensure_database("bench_reference", "bench_reference", "bench")
        found["postgres_order_plus_outbox"] = refs.pgbench_order_outbox(
            stack.postgres.bindir,
            host="127.0.0.1",
            port=stack.postgres.port or 0,
            user="bench_reference",
            password="bench",
            database="bench_reference",
            seconds=seconds,
        )
    except Exception as exc:  # a reference that fails is reported, the run goes on
        found["postgres_order_plus_outbox"] = {"error": repr(exc)}
    try:
        found["kafka_tool_end_to_end"] = refs.kafka_tool_end_to_end_latency(
            stack.kafka.libs_dir, stack.kafka_bootstrap, messages=1000 if args.quick else 3000
        )
        found["kafka_our_hop"] = refs.our_kafka_hop(
            stack.kafka_bootstrap, messages=1000 if args.quick else 3000
        )
    except Exception as exc:
        found["kafka"] = {"error": repr(exc)}
    return found


PEER_DATABASES = ("bench_peer_ceiling", "bench_peer_dbos", "bench_peer_dbos_system")


def peer_references(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Each peer (``peers.py``) in its own process on the stack's PostgreSQL, closed loop at each
    concurrency; the best of them is the peer's figure. PostgreSQL's CPU is counted by the peer
    over its measured window."""
    assert stack.postgres is not None
    for name in PEER_DATABASES:
        stack.postgres.ensure_database(name, "bench_peer", "bench")
    url = {name: stack.postgres.url(name, "bench_peer", "bench") for name in PEER_DATABASES}
    script = str(Path(__file__).with_name("peers.py"))
    found: dict[str, Any] = {}
    plans = {
        "ceiling": ([url["bench_peer_ceiling"]], args.ceiling_concurrency),
        "dbos": ([url["bench_peer_dbos"], url["bench_peer_dbos_system"]], args.dbos_concurrency),
    }
    for peer, (urls, concurrencies) in plans.items():
        runs = []
        for concurrency in concurrencies:
            cmd = [
                sys.executable,
                script,
                peer,
                *urls,
                f"--seconds={args.peer_seconds}",
                f"--concurrency={concurrency}",
                f"--postgres-pid={stack.postgres.pid}",
            ]
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=args.peer_seconds + 120)
            if result.returncode != 0:
                runs.append({"concurrency": concurrency, "error": result.stderr.strip()[-1500:]})
                print(f"  {peer} x{concurrency}: failed: {result.stderr.strip()[-300:]}", flush=True)
                continue
            run = json.loads(result.stdout.strip().splitlines()[-1])
            run["cpu_ms_per_order"]["total"] = round(sum(run["cpu_ms_per_order"].values()), 3)
            runs.append(run)
            print(
                f"  {peer} x{concurrency}: {run['orders_per_second']} orders/s, "
                f"CPU {run['cpu_ms_per_order']}, p50 {run['latency_ms']['p50']} ms",
                flush=True,
            )
        measured = [r for r in runs if "orders_per_second" in r]
        found[peer] = {
            "best": max(measured, key=lambda r: r["orders_per_second"]) if measured else None,
            "runs": runs,
        }
    return found


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=repo_root() / "bench" / "results")
    parser.add_argument("--quick", action="store_true", help="short steps, one run each: a smoke run")
    parser.add_argument("--runs", type=int, help="searches and 70 %% measurements (default 3; --quick 1)")
    parser.add_argument(
        "--tracing", action="store_true", help="also the tracing-cost comparison (6 fresh stacks, ~6 min)"
    )
    parser.add_argument(
        "--no-tracing", action="store_true", help="(the default now; kept for older command lines)"
    )
    parser.add_argument("--profile", action="store_true", help="also py-spy every service at 70 %%")
    parser.add_argument(
        "--tracing-only",
        type=float,
        metavar="RATE",
        help="only the tracing-cost comparison at RATE orders/s; writes OUT/tracing.json",
    )
    parser.add_argument("--start-rate", type=float, default=20.0)
    parser.add_argument("--ceiling", type=float, default=1500.0)
    parser.add_argument("--browse-rate", type=float, default=40.0)
    parser.add_argument(
        "--brokers",
        type=int,
        default=int(os.environ.get("EMPORIUM_BROKERS") or 1),
        help="Kafka nodes (3: replication factor 3, min.insync.replicas 2); default $EMPORIUM_BROKERS or 1",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=int(os.environ.get("EMPORIUM_REPLICAS") or 1),
        help="processes per service behind the gateway; default $EMPORIUM_REPLICAS or 1",
    )
    args = parser.parse_args()
    SHAPE.update(brokers=args.brokers, replicas=args.replicas)
    args.runs = args.runs or (1 if args.quick else 3)
    args.step_seconds = 5.0 if args.quick else 10.0
    args.measure_seconds = 8.0 if args.quick else 20.0
    args.reference_rates = [100.0] if args.quick else [100.0, 300.0]
    args.reference_seconds = 3.0 if args.quick else 5.0
    args.peer_seconds = 4.0 if args.quick else 8.0
    args.ceiling_concurrency = [32] if args.quick else [16, 64]
    args.dbos_concurrency = [8] if args.quick else [8, 32]
    if args.tracing_only:
        generator = vegeta.ensure_vegeta(cache_dir())
        found = asyncio.run(tracing_cost(args.tracing_only, args, generator))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "tracing.json").write_text(json.dumps(found, indent=2))
        print("\n".join(report.tracing_rows(found)))
        sys.exit(0)
    sys.exit(asyncio.run(main(args)))

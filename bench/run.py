"""`make bench`: the whole system under open-loop load, against the machine's own ceilings.

    uv run python bench/run.py [--quick] [--out bench/results] [--brokers 3 --replicas 2]

``--brokers`` / ``--replicas`` (default ``EMPORIUM_BROKERS`` / ``EMPORIUM_REPLICAS``, else 1): the
shape of every stack it starts, as ``make run`` takes them, so 1x1 and 3x2 can be measured back to
back (``make bench`` then ``EMPORIUM_BROKERS=3 EMPORIUM_REPLICAS=2 make bench BENCH_FLAGS="--out
bench/results-3x2"``). CPU per order is summed per service over its replicas, and over the
Kafka nodes, so the two reports compare row by row.

Brings up the local stack (fsync on, as `make run`), finds the maximum sustainable order rate
(completion p99 under 1 s, every order done shortly after the step, no backlog left), measures
at 50 % and 70 % of it, measures browsing and a 90/10 mix, and runs the reference measurements
(PostgreSQL ceiling, gateway cost against direct and nginx, Kafka's own end-to-end latency
tool) in the same run. Writes ``results.json``, ``report.md`` and PNG plots.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
import hops
import loadgen
import report

from emporium_devstack.jaeger import jaeger_built
from emporium_devstack.stack import SERVICES, Stack
from emporium_devstack.testing import cache_dir, repo_root

TICKS = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------- CPU accounting


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


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
            cpu["postgresql"] = _cpu_seconds(root) + sum(_cpu_seconds(c) for c in _children(root))
        if self.stack.jaeger is not None and self.stack.jaeger.pid:
            cpu["jaeger"] = _cpu_seconds(self.stack.jaeger.pid)
        cpu["load generator"] = time.process_time()
        return cpu

    @staticmethod
    def per_order(before: dict[str, float], after: dict[str, float], orders: int) -> dict[str, float]:
        return {
            name: round((after[name] - before.get(name, 0.0)) / max(orders, 1) * 1000, 3) for name in after
        }  # CPU milliseconds per order


# ---------------------------------------------------------------------- one measured step


class Bench:
    def __init__(self, stack: Stack, shop: loadgen.Shop, seed: int = 11) -> None:
        self.stack = stack
        self.shop = shop
        self.rng = random.Random(seed)
        self.orders_db = sa.create_engine(stack.database_url("orders"))
        self.dbs = {name: sa.create_engine(stack.database_url(name)) for name in SERVICES}
        self.processes = Processes(stack)

    def completions(self, samples: list[loadgen.Sample], wait: float) -> tuple[dict[str, float], int]:
        """Seconds from each order's scheduled POST to its terminal status (from the orders
        database, so following the orders adds no load), and how many were not done in time."""
        ids = {s.order_id: s for s in samples if s.order_id}
        deadline = time.time() + wait
        while True:
            with self.orders_db.connect() as conn:
                rows = conn.execute(
                    sa.text(
                        "SELECT order_id::text, min(extract(epoch FROM at)) FROM order_history "
                        "WHERE order_id::text = ANY(:ids) AND status IN ('CONFIRMED', 'CANCELLED') GROUP BY 1"
                    ),
                    {"ids": list(ids)},
                ).all()
            if len(rows) == len(ids) or time.time() > deadline:
                break
            time.sleep(0.2)
        return {oid: float(at) - ids[oid].scheduled for oid, at in rows}, len(ids) - len(rows)

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
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.stack.kafka_bootstrap)
        probe = AIOKafkaConsumer(bootstrap_servers=self.stack.kafka_bootstrap)
        await admin.start()
        await probe.start()
        try:
            lag = {}
            for group in ("inventory", "payments", "orders", "notifications"):
                committed = await admin.list_consumer_group_offsets(group)
                ends = await probe.end_offsets(list(committed))
                lag[group] = sum(
                    max(0, ends[tp] - meta.offset) for tp, meta in committed.items() if meta.offset >= 0
                )
            return lag
        finally:
            await probe.stop()
            await admin.close()

    async def checkout_step(self, rate: float, seconds: float, *, wait: float = 5.0) -> dict[str, Any]:
        since = time.time()
        cpu_before = self.processes.snapshot()
        run = await loadgen.open_loop(rate, seconds, loadgen.checkout_fire(self.shop, self.rng))
        done, unfinished = await asyncio.to_thread(self.completions, run.samples, wait)
        cpu_after = self.processes.snapshot()
        await asyncio.sleep(1.0)  # consumers commit offsets at most every 250 ms (or after an idle poll)
        posts = run.of("order")
        accepted = [s for s in posts if s.status == 202]
        completion = loadgen.summary_ms(list(done.values()))
        lag = await self.consumer_lag()
        backlog = await asyncio.to_thread(self.backlog)
        result = {
            "offered_rate": rate,
            "seconds": seconds,
            "accepted": len(accepted),
            "errors": len(posts) - len(accepted),
            "unfinished": unfinished,
            "late_starts": run.late_starts,
            "achieved_rate": round(len(done) / max(max(s.finished for s in posts) - since, 1e-9), 1)
            if posts
            else 0,
            "post_ms": loadgen.summary_ms([s.latency for s in posts]),
            "completion_ms": completion,
            "outbox_relay_lag_ms": await asyncio.to_thread(self.relay_lag, since),
            "consumer_lag_after": lag,
            "outbox_backlog_after": backlog,
            "cpu_ms_per_order": self.processes.per_order(cpu_before, cpu_after, len(accepted)),
            "timeline": report.timeline(run.samples, done),
            "hops_ms": await asyncio.to_thread(
                hops.breakdown, self.dbs, [s for s in posts if s.order_id in done]
            ),
        }
        p99 = completion["p99"]
        result["sustainable"] = bool(
            accepted
            and result["errors"] <= 0.01 * len(posts)
            and unfinished == 0
            and p99 is not None
            and p99 < 1000
            and run.late_starts <= 0.01 * len(posts)
            and backlog == 0
            and sum(lag.values()) < rate
        )
        print(
            f"  checkout {rate:6.1f}/s: accepted {len(accepted)}, errors {result['errors']}, "
            f"POST p99 {result['post_ms']['p99']} ms, completion p50 {completion['p50']} p99 {p99} ms, "
            f"unfinished {unfinished} -> {'ok' if result['sustainable'] else 'NOT sustainable'}",
            flush=True,
        )
        return result

    async def browse_step(self, rate: float, seconds: float, mixed: bool = False) -> dict[str, Any]:
        fire = loadgen.mixed_fire(self.shop, self.rng) if mixed else loadgen.browse_fire(self.shop, self.rng)
        started = time.time()
        run = await loadgen.open_loop(rate, seconds, fire)
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
        }
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


async def find_max_rate(
    bench: Bench, *, start: float, step_seconds: float, ceiling: float
) -> tuple[float, list]:
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
    work = Path(tempfile.mkdtemp(prefix="emporium-bench-"))
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {
            "quick": args.quick,
            "step_seconds": args.step_seconds,
            "measure_seconds": args.measure_seconds,
            "postgres_fsync": True,
            "kafka_brokers": SHAPE["brokers"],
            "service_replicas": SHAPE["replicas"],
            "load": "open loop, latency from each request's scheduled start",
        },
    }
    stack = _stack(work)
    print(f"starting the stack in {work} ...", flush=True)
    await asyncio.to_thread(stack.start, 180)
    try:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30, limits=limits) as http:
            shop = await loadgen.Shop.prepare(http, stack.admin_email, stack.admin_password)
            bench = Bench(stack, shop)
            print("warming up ...", flush=True)
            await bench.checkout_step(10, 3)
            await bench.browse_step(50, 3)

            print("searching the maximum sustainable order rate ...", flush=True)
            best, steps = await find_max_rate(
                bench, start=args.start_rate, step_seconds=args.step_seconds, ceiling=args.ceiling
            )
            results["search"] = steps
            results["max_sustainable_orders_per_second"] = best
            results["at_50"] = await bench.checkout_step(round(best * 0.5, 1), args.measure_seconds)
            await asyncio.sleep(2)
            results["at_70"] = await bench.checkout_step(round(best * 0.7, 1), args.measure_seconds)
            await asyncio.sleep(2)
            results["browse"] = await bench.browse_step(args.browse_rate, args.measure_seconds)
            await asyncio.sleep(2)
            results["mixed"] = await bench.browse_step(args.browse_rate, args.measure_seconds, mixed=True)

        print("reference measurements ...", flush=True)
        results["references"] = await asyncio.to_thread(references, stack, args)
    finally:
        await asyncio.to_thread(stack.stop)
    if not args.no_tracing:
        results["tracing"] = await tracing_cost(round(best * 0.5, 1), args)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    report.write(results, out)
    print(f"\nwrote {out / 'report.md'}, {out / 'results.json'} and plots", flush=True)
    return 0


async def tracing_cost(rate: float, args: argparse.Namespace) -> dict[str, Any]:
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
        runs[key].append(await _tracing_arm(key, rate, args, observe=observe, env=env))
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
    key: str, rate: float, args: argparse.Namespace, *, observe: bool, env: dict[str, str]
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"emporium-bench-{key}-"))
    # No Prometheus: its scrapes would cost the services CPU in one arm only.
    stack = _stack(work, observe=observe, monitor=False, env=env)
    print(f"tracing cost, {key.replace('_', ' ')}: {rate}/s ...", flush=True)
    await asyncio.to_thread(stack.start, 180)
    try:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30, limits=limits) as http:
            shop = await loadgen.Shop.prepare(http, stack.admin_email, stack.admin_password)
            bench = Bench(stack, shop)
            await bench.checkout_step(10, 5)
            step = await bench.checkout_step(rate, args.measure_seconds)
            return {k: step[k] for k in ("accepted", "completion_ms", "cpu_ms_per_order", "sustainable")}
    finally:
        await asyncio.to_thread(stack.stop)


def references(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    try:
        import references as refs
    except ImportError as exc:  # the module is optional while it is being written
        return {"error": f"references unavailable: {exc}"}
    found: dict[str, Any] = {}
    seconds = 5 if args.quick else 10
    try:
        stack.postgres.ensure_database("bench_reference", "bench_reference", "bench")
        found["postgres_order_plus_outbox"] = refs.pgbench_order_outbox(
            stack.postgres.bindir,
            host="127.0.0.1",
            port=stack.postgres.port,
            user="bench_reference",
            password="bench",
            database="bench_reference",
            seconds=seconds,
        )
    except Exception as exc:  # a reference that fails is reported, the run goes on
        found["postgres_order_plus_outbox"] = {"error": repr(exc)}
    try:
        path = "/products?page_size=20"
        found["catalog_read_direct"] = refs.http_read_rate(
            f"{stack.service_url('catalog')}{path}", seconds=seconds
        )
        found["catalog_read_gateway"] = refs.http_read_rate(
            f"{stack.gateway_url}/api/v1{path}", seconds=seconds
        )
        with refs.nginx_proxy(stack.ports["catalog"]) as port:
            found["catalog_read_nginx"] = refs.http_read_rate(
                f"http://127.0.0.1:{port}{path}", seconds=seconds
            )
    except Exception as exc:
        found["http_reads"] = {"error": repr(exc)}
    try:
        found["kafka_tool_end_to_end"] = refs.kafka_tool_end_to_end_latency(
            stack.kafka.libs_dir, stack.kafka_bootstrap, messages=1000 if args.quick else 3000
        )
        found["kafka_our_hop"] = (
            asyncio.run(refs.our_kafka_hop(stack.kafka_bootstrap, messages=1000 if args.quick else 3000))
            if asyncio.iscoroutinefunction(refs.our_kafka_hop)
            else refs.our_kafka_hop(stack.kafka_bootstrap, messages=1000 if args.quick else 3000)
        )
    except Exception as exc:
        found["kafka"] = {"error": repr(exc)}
    return found


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=repo_root() / "bench" / "results")
    parser.add_argument("--quick", action="store_true", help="short steps, for a smoke run")
    parser.add_argument("--no-tracing", action="store_true", help="skip the tracing-cost comparison")
    parser.add_argument(
        "--tracing-only",
        type=float,
        metavar="RATE",
        help="only the tracing-cost comparison at RATE orders/s; writes OUT/tracing.json",
    )
    parser.add_argument("--start-rate", type=float, default=10.0)
    parser.add_argument("--ceiling", type=float, default=800.0)
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
    args.step_seconds = 5.0 if args.quick else 10.0
    args.measure_seconds = 8.0 if args.quick else 20.0
    if args.tracing_only:
        found = asyncio.run(tracing_cost(args.tracing_only, args))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "tracing.json").write_text(json.dumps(found, indent=2))
        print("\n".join(report.tracing_rows(found)))
        sys.exit(0)
    sys.exit(asyncio.run(main(args)))

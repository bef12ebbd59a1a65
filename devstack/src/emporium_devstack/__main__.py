"""``python -m emporium_devstack run``: the whole system on this machine (the body of `make run`).

Kafka, PostgreSQL, an SMTP sink, the five services and the gateway on 127.0.0.1:8000
(``GATEWAY_PORT`` overrides), plus a demo catalog (``--no-demo`` skips it), Jaeger receiving
every process's spans, and Prometheus and Alertmanager on 9090 and 9093 with the project's
alert rules (free ports when taken; ``EMPORIUM_OBSERVE=0`` leaves all three out). Ctrl-C or
SIGTERM stops everything and exits 0.

``EMPORIUM_BROKERS=3`` runs a three-node Kafka cluster (replication factor 3,
``min.insync.replicas`` 2) instead of one broker, and ``EMPORIUM_REPLICAS=2`` two processes of
every service (ports 8011-8015 for the second, 8021-8025 for a third) behind the one gateway.

State lives in ``$EMPORIUM_CACHE`` (default ``<repo>/.cache``): ``kafka-<version>/`` (jars) and
``stack/`` (Kafka and PostgreSQL data, mail, logs), kept across runs.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

from .jaeger import Jaeger, render_trace
from .stack import SERVICES, Stack, repo_root


class _Stop(Exception):
    """Raised in the main thread by the SIGTERM/SIGINT handler."""


def _say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _summary(stack: Stack, started_in: float, seed_time: float | None, products: int | None) -> str:
    lines = ["", "=" * 72, "Emporium is up", "=" * 72]
    if stack.include_gateway:
        lines.append(
            f"gateway         {stack.gateway_url}   (API {stack.gateway_url}/api/v1, docs {stack.gateway_url}/docs)"
        )
    for name in SERVICES:
        lines.append(f"{name:<15} {'  '.join(stack.service_urls(name))}")
    kafka = stack.kafka
    if kafka is not None and kafka.size > 1:
        lines.append(
            f"kafka           {kafka.size} nodes, replication factor {kafka.replication_factor}, "
            f"min.insync.replicas {kafka.min_insync_replicas}: {stack.kafka_bootstrap}"
        )
    else:
        lines.append(f"kafka           {stack.kafka_bootstrap}")
    if stack.postgres is not None:
        lines.append(f"postgresql      127.0.0.1:{stack.postgres.port}  (superuser postgres, trust auth)")
    for name in stack.names:
        lines.append(f"  db {name:<11} {stack.database_url(name)}")
    lines.append(f"smtp sink       127.0.0.1:{stack.smtp_port} -> {stack.maildir}")
    if stack.jaeger is not None:
        lines.append(
            f"jaeger          {stack.jaeger.ui_url}   (traces; OTLP in at {stack.jaeger.otlp_http_endpoint})"
        )
    if stack.monitoring is not None:
        lines.append(f"prometheus      {stack.monitoring.prometheus_url}   (rules: deploy/observability)")
        lines.append(f"alertmanager    {stack.monitoring.alertmanager_url}")
    lines.append(f"logs            {stack.log_dir}")
    if stack.include_gateway:
        lines.append(f"admin           {stack.admin_email} / {stack.admin_password}")
    lines.append("")
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in stack.timings.items() if k != "total")
    lines.append(f"started in {started_in:.1f}s ({phases})")
    if seed_time is not None:
        lines.append(f"demo catalog: {products} products with stock, seeded in {seed_time:.1f}s")
    lines.append("Ctrl-C stops everything.")
    lines.append("=" * 72)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    root = repo_root()
    cache_dir = Path(os.environ.get("EMPORIUM_CACHE") or root / ".cache").resolve()
    work_dir = cache_dir / "stack"
    gateway_port = int(os.environ.get("GATEWAY_PORT") or 8000)
    brokers = int(os.environ.get("EMPORIUM_BROKERS") or 1)
    replicas = int(os.environ.get("EMPORIUM_REPLICAS") or 1)

    def on_signal(signum: int, _frame: object) -> None:
        raise _Stop(signal.Signals(signum).name)

    # Handlers raise in the main thread; start() stops whatever it had started when interrupted.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    stack = Stack(
        root=root,
        cache_dir=cache_dir,
        work_dir=work_dir,
        gateway_port=gateway_port,
        fast_postgres=args.fast_postgres,
        wait_for=args.wait_for,
        observe=os.environ.get("EMPORIUM_OBSERVE", "1") != "0",
        brokers=brokers,
        replicas=replicas,
        # Readable lines on the terminal, prefixed by service; LOG_FORMAT=json for the JSON lines.
        env={"LOG_FORMAT": os.environ.get("LOG_FORMAT", "text")},
    )
    t0 = time.monotonic()
    shape = (
        f", {brokers} Kafka brokers, {replicas} replicas of each service" if brokers * replicas > 1 else ""
    )
    _say(f"starting Emporium from {root} (state in {work_dir}{shape})")
    try:
        try:
            stack.start(timeout=args.timeout)
        except _Stop as stop:
            _say(f"\n{stop} during start-up; stopped.")
            return 0
        except Exception as exc:
            _say(f"\nstart-up failed: {exc}")
            return 1
        started_in = time.monotonic() - t0
        seed_time = products = None
        if not args.no_demo and stack.include_gateway:
            t = time.monotonic()
            from .demo import seed_demo

            try:
                products = len(seed_demo(stack.gateway_url, stack.admin_email, stack.admin_password))
                seed_time = time.monotonic() - t
            except _Stop:
                raise
            except Exception as exc:
                _say(f"demo catalog seeding failed (stack keeps running): {exc}")
        _say(_summary(stack, started_in, seed_time, products))
        wake = threading.Event()
        while True:
            for proc in stack.processes:
                if not proc.running:
                    _say(f"!! {proc.name} exited with code {proc.returncode} (the rest keeps running)")
                    wake.set()
            if wake.is_set():
                # Report each crash once; keep waiting for Ctrl-C.
                while True:
                    signal.pause()
            time.sleep(1.0)
    except _Stop as stop:
        _say(f"\n{stop}: stopping Emporium ...")
    finally:
        # Ignore further signals while stopping; a second Ctrl-C must not leave orphans.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        t = time.monotonic()
        try:
            stack.stop()
        except Exception as exc:
            _say(f"errors while stopping: {exc}")
        _say(f"stopped in {time.monotonic() - t:.1f}s")
    return 0


def show_trace(args: argparse.Namespace) -> int:
    """Print one trace from the Jaeger that `make run` started (its query API, in the terminal)."""
    cache_dir = Path(os.environ.get("EMPORIUM_CACHE") or repo_root() / ".cache").resolve()
    jaeger = Jaeger(binary=Path("jaeger"), data_dir=cache_dir / "stack" / "jaeger")
    if jaeger.ports["ui_port"] is None:
        _say("no Jaeger has run here yet: start `make run` first")
        return 1
    try:
        found = jaeger.trace(args.trace_id)
    except OSError as exc:
        _say(f"Jaeger at {jaeger.ui_url} did not answer ({exc}); is `make run` running?")
        return 1
    if found is None:
        _say(f"Jaeger at {jaeger.ui_url} has no trace {args.trace_id} (yet)")
        return 1
    _say(render_trace(found))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m emporium_devstack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="start everything and wait for Ctrl-C")
    p_run.add_argument("--no-demo", action="store_true", help="do not seed the demo catalog")
    p_run.add_argument("--timeout", type=float, default=180, help="seconds to wait for readiness")
    p_run.add_argument("--fast-postgres", action="store_true", help="fsync off (throwaway data)")
    p_run.add_argument("--wait-for", choices=["gateway", "services", "none"], default="gateway")
    p_trace = sub.add_parser(
        "trace", help="print one trace (e.g. an order's trace_id) from make run's Jaeger"
    )
    p_trace.add_argument("trace_id")
    args = parser.parse_args(argv)
    if args.command == "trace":
        return show_trace(args)
    if args.command == "run":
        return run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())

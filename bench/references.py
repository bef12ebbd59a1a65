"""Reference measurements: the machine's own ceilings, measured next to the saga numbers.

    uv run python bench/references.py <name> [options]     # one measurement, JSON on stdout
    uv run python bench/references.py selftest [--seconds 5]  # temp broker + cluster + catalog, all of them

Each measurement is a plain function returning a dict of numbers (times in milliseconds):

- ``pgbench_order_outbox``: PostgreSQL's ceiling for the write every order makes (one order row
  plus one outbox row per transaction), with ``pgbench`` from the cluster's own bindir.
- ``http_read_rate``: ``wrk --latency`` against a URL; with ``nginx_proxy`` (a throwaway nginx in
  front of a port) it tells what a minimal reverse proxy costs, the yardstick for the gateway.
- ``kafka_tool_end_to_end_latency``: Kafka's own ``org.apache.kafka.tools.EndToEndLatency`` (one
  record produced, then consumed, then the next), from the same jars as the broker plus
  ``kafka-tools`` (fetched by ``ensure_kafka_tools_jar``).
- ``our_kafka_hop``: the same one-at-a-time measurement with our client settings
  (``emporium_events.kafka.make_producer`` and a consumer configured like ``EventConsumer``).

External tools (wrk, nginx) are installed with apt-get when missing and we are root.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from emporium_devstack.ports import free_port, log_tail, wait_for_port

KAFKA_VERSION = "4.1.2"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
TOOL_JVM_FLAGS = ("-Xms64m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:-UsePerfData", "-Djava.awt.headless=true")
_MARKER = ".complete"

# ---------------------------------------------------------------------------------------------
# helpers


def _is_root() -> bool:
    return os.geteuid() == 0


def _which(name: str) -> str | None:
    """`shutil.which`, also looking in the sbin directories (nginx lives in /usr/sbin)."""
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        candidate = Path(folder) / name
        if candidate.exists() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def apt_install(packages: list[str]) -> None:
    """apt-get update + install (root only). Package scripts may not start services: if no
    /usr/sbin/policy-rc.d exists, a temporary one answering 101 ("action forbidden") is used."""
    if not _is_root():
        raise RuntimeError(
            f"missing {packages}; not root, install them yourself: "
            f"sudo apt-get update && sudo apt-get install -y {' '.join(packages)}"
        )
    policy = Path("/usr/sbin/policy-rc.d")
    temporary_policy = not policy.exists()
    if temporary_policy:
        policy.write_text(
            "#!/bin/sh\n# written by emporium bench/references.py during apt-get install\nexit 101\n"
        )
        policy.chmod(0o755)
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "--no-install-recommends", *packages],
        ):
            result = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-4000:]}")
    finally:
        if temporary_policy:
            policy.unlink(missing_ok=True)


def _percentile(sorted_values: list[float], q: float) -> float:
    """Value at index int(n*q) of an ascending list: the rule Kafka's EndToEndLatency uses."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


_DURATION_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _duration_ms(text: str) -> float:
    """wrk's duration format ("812.00us", "1.23ms", "2.00s", "1.00m") in milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


# ---------------------------------------------------------------------------------------------
# 1. PostgreSQL: order + outbox insert per transaction

# Shaped like services/orders/src/orders/migrations/versions/0001_initial.py (orders) and
# emporium_events.schema.create_messaging_tables_v1 (outbox), indexes included.
PGBENCH_SCHEMA = """\
DROP TABLE IF EXISTS outbox;
DROP TABLE IF EXISTS orders;
CREATE TABLE orders (
    id uuid PRIMARY KEY,
    customer_id uuid NOT NULL,
    customer_email text,
    status text NOT NULL,
    total_cents bigint NOT NULL,
    currency varchar(3) NOT NULL,
    cancel_reason text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX ix_orders_customer_id ON orders (customer_id);
CREATE TABLE outbox (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    event_id uuid NOT NULL UNIQUE,
    topic text NOT NULL,
    key text NOT NULL,
    event_type text NOT NULL,
    envelope jsonb NOT NULL,
    trace_headers jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
"""

# One transaction = the order row + its OrderPlaced outbox row (an envelope of about 600 bytes,
# like ours), two statements. The ids are made on the client like the service does (uuid4 in
# Python): md5 of a random 63-bit number, which pgbench substitutes in every query mode (pgbench
# has no :'var' quoting, which a uuid from \gset RETURNING would need).
PGBENCH_SCRIPT = """\
\\set order random(1, 9223372036854775806)
\\set customer random(1, 9223372036854775806)
\\set total random(100, 100000)
\\set qty random(1, 5)
BEGIN;
INSERT INTO orders (id, customer_id, customer_email, status, total_cents, currency, created_at, updated_at)
  VALUES (md5(:order::bigint::text)::uuid, md5(:customer::bigint::text)::uuid, 'bench@example.com',
    'PENDING', :total::bigint, 'USD', now(), now());
INSERT INTO outbox (event_id, topic, key, event_type, envelope, trace_headers)
  VALUES (gen_random_uuid(), 'orders.events', md5(:order::bigint::text)::uuid::text, 'OrderPlaced',
    jsonb_build_object(
      'event_id', gen_random_uuid(), 'event_type', 'OrderPlaced', 'schema_version', 1,
      'occurred_at', now(), 'producer', 'orders', 'correlation_id', gen_random_uuid(),
      'payload', jsonb_build_object(
        'order_id', md5(:order::bigint::text)::uuid, 'customer_id', md5(:customer::bigint::text)::uuid,
        'customer_email', 'bench@example.com', 'currency', 'USD', 'total_cents', :total::bigint,
        'payment_token', 'tok_visa',
        'lines', jsonb_build_array(jsonb_build_object(
          'product_id', gen_random_uuid(), 'sku', 'BENCH-0001', 'name', 'Benchmark kettle',
          'quantity', :qty::int, 'unit_price_cents', :total::bigint)))),
    '{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}'::jsonb);
END;
"""


def pgbench_order_outbox(
    cluster_bindir: Path,
    *,
    host: str,
    port: int,
    user: str,
    password: str,
    database: str,
    seconds: int = 10,
    clients: int = 4,
    threads: int = 2,
    protocol: str = "simple",
) -> dict[str, Any]:
    """PostgreSQL's ceiling for the order write: pgbench transactions of one orders + one outbox insert."""
    bindir = Path(cluster_bindir)
    env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="10")
    conn = ["-h", host, "-p", str(port), "-U", user, "-d", database]
    with tempfile.TemporaryDirectory(prefix="emporium-pgbench-") as tmp:
        setup = subprocess.run(
            [str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", *conn],
            input=PGBENCH_SCHEMA,
            env=env,
            capture_output=True,
            text=True,
            cwd=tmp,
        )
        if setup.returncode != 0:
            raise RuntimeError(
                f"creating the pgbench tables failed ({setup.returncode}):\n{setup.stderr[-4000:]}"
            )
        script = Path(tmp) / "order_outbox.sql"
        script.write_text(PGBENCH_SCRIPT)
        cmd = [
            str(bindir / "pgbench"),
            "-n",
            "-f",
            str(script),
            "-M",
            protocol,
            "-T",
            str(int(seconds)),
            "-c",
            str(clients),
            "-j",
            str(max(1, min(threads, clients))),
            *conn,
        ]
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp)
        rows = subprocess.run(
            [
                str(bindir / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                *conn,
                "-c",
                "SELECT (SELECT count(*) FROM orders) || ' ' || (SELECT count(*) FROM outbox)",
            ],
            env=env,
            capture_output=True,
            text=True,
            cwd=tmp,
        )
    out = result.stdout
    if result.returncode != 0 or "tps =" not in out:
        raise RuntimeError(f"pgbench failed ({result.returncode}):\n{out[-2000:]}\n{result.stderr[-2000:]}")
    tps = re.search(r"^tps = ([\d.]+)", out, re.M)
    latency = re.search(r"^latency average = ([\d.]+) ms", out, re.M)
    processed = re.search(r"^number of transactions actually processed: (\d+)", out, re.M)
    failed = re.search(r"^number of failed transactions: (\d+)", out, re.M)
    if tps is None or latency is None:
        raise RuntimeError(f"cannot parse pgbench output:\n{out}")
    found: dict[str, Any] = {
        "tps": float(tps.group(1)),
        "latency_ms_avg": float(latency.group(1)),
        "clients": clients,
        "seconds": seconds,
        "transactions": int(processed.group(1)) if processed else None,
        "failed": int(failed.group(1)) if failed else 0,
        "protocol": protocol,
    }
    if rows.returncode == 0 and rows.stdout.split():
        orders_rows, outbox_rows = (int(v) for v in rows.stdout.split())
        found["rows_orders"], found["rows_outbox"] = orders_rows, outbox_rows
    return found


# ---------------------------------------------------------------------------------------------
# 2. HTTP reads: wrk, and nginx as the yardstick for the gateway


def ensure_wrk() -> str:
    """Path of `wrk`, apt-get installing Debian's `wrk` when missing (root only)."""
    path = _which("wrk")
    if path is None:
        apt_install(["wrk"])
        path = _which("wrk")
    if path is None:
        raise RuntimeError("wrk installed but not found on PATH")
    return path


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/sec, latency avg/stdev/max and the --latency percentiles (ms) of wrk's report."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if rps is None:
        raise RuntimeError(f"cannot parse wrk output:\n{output}")
    found: dict[str, Any] = {"requests_per_second": float(rps.group(1))}
    stats = re.search(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)\s+\S+", output, re.M)
    if stats:
        found["latency_ms_avg"] = _duration_ms(stats.group(1))
        found["latency_ms_stdev"] = _duration_ms(stats.group(2))
        found["latency_ms_max"] = _duration_ms(stats.group(3))
    for pct, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", output, re.M):
        found[f"latency_ms_p{pct}"] = _duration_ms(value)
    total = re.search(r"^\s+(\d+) requests in ([\d.]+\w+)", output, re.M)
    if total:
        found["requests"] = int(total.group(1))
        found["duration_s"] = _duration_ms(total.group(2)) / 1000.0
    non_2xx = re.search(r"^\s+Non-2xx or 3xx responses: (\d+)", output, re.M)
    found["non_2xx_3xx"] = int(non_2xx.group(1)) if non_2xx else 0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    found["socket_errors"] = sum(int(v) for v in errors.groups()) if errors else 0
    return found


def http_read_rate(
    url: str, *, seconds: int = 10, connections: int = 32, threads: int = 2, warmup_seconds: int = 2
) -> dict[str, Any]:
    """Closed-loop GET throughput and latency percentiles of `url` with `wrk --latency` (after an
    uncounted warm-up run of `warmup_seconds`, same connections)."""
    wrk = ensure_wrk()
    if warmup_seconds > 0:
        subprocess.run(
            [
                wrk,
                "-t",
                str(threads),
                "-c",
                str(connections),
                "-d",
                f"{int(warmup_seconds)}s",
                "--timeout",
                "5s",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=warmup_seconds + 60,
        )
    cmd = [
        wrk,
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{int(seconds)}s",
        "--timeout",
        "5s",
        "--latency",
        url,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if result.returncode != 0:
        raise RuntimeError(
            f"wrk failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    found = parse_wrk(result.stdout)
    found.update(url=url, seconds=seconds, connections=connections, threads=threads)
    return found


def ensure_nginx() -> str:
    """Path of `nginx`, apt-get installing Debian's `nginx` when missing (root only; the package's
    own service is never started, see apt_install)."""
    path = _which("nginx")
    if path is None:
        apt_install(["nginx"])
        path = _which("nginx")
    if path is None:
        raise RuntimeError("nginx installed but not found")
    return path


NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp/client_body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    upstream upstream_service {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://upstream_service;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;
        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx_proxy(upstream_port: int, *, timeout: float = 15) -> Iterator[int]:
    """A throwaway nginx (1 worker, keepalive upstream) on a free 127.0.0.1 port in front of
    127.0.0.1:`upstream_port`; yields its port, stops it (SIGQUIT, then TERM/KILL) on exit.
    Config, pid, logs and temp files live in a temp dir; /etc/nginx is never read."""
    nginx = ensure_nginx()
    workdir = Path(tempfile.mkdtemp(prefix="emporium-nginx-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        (workdir / "tmp").mkdir()
        port = free_port()
        conf = workdir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=workdir, upstream_port=upstream_port, port=port))
        log = workdir / "error.log"
        # -e: the error log used before the config is read (else /var/log/nginx/error.log).
        with open(workdir / "stderr.log", "wb") as stderr:
            proc = subprocess.Popen(
                [nginx, "-e", str(log), "-p", str(workdir), "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                start_new_session=True,
            )
        try:
            wait_for_port("127.0.0.1", port, timeout=timeout, process=proc, log_path=log)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\nnginx output:\n{log_tail(workdir / 'stderr.log')}") from None
        yield port
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # graceful: workers finish their requests
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # a worker left behind, if any
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# 3. Kafka: one record at a time, produced then consumed

TOOLS_POM = """\
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.emporium.bench</groupId>
  <artifactId>kafka-tools-libs</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>{version}</version>
    </dependency>
  </dependencies>
</project>
"""

_JAR_VERSION = re.compile(r"-\d[^-]*(?:-[A-Za-z0-9.]+)*\.jar$")


def _jar_artifact(name: str) -> str:
    """ "jackson-core-2.19.4.jar" -> "jackson-core", "zstd-jni-1.5.6-10.jar" -> "zstd-jni"."""
    return _JAR_VERSION.sub("", name)


def ensure_kafka_tools_jar(
    cache_dir: Path, *, broker_libs: Path | None = None, version: str = KAFKA_VERSION
) -> Path:
    """Fetch org.apache.kafka:kafka-tools (runtime deps) with Maven into
    `cache_dir/kafka-tools-<version>/`, keeping only the jars whose artifact is not already in
    `broker_libs` (default `cache_dir/kafka-<version>/libs`), so `<broker libs>/*:<dir>/*` holds
    one version of each. Idempotent (completion marker) and safe across processes (file lock)."""
    cache_dir = Path(cache_dir).resolve()
    broker_libs = Path(broker_libs).resolve() if broker_libs else cache_dir / f"kafka-{version}" / "libs"
    base = cache_dir / f"kafka-tools-{version}"
    marker = base / _MARKER
    if marker.exists():
        return base
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return base
        mvn = _which("mvn")
        if mvn is None:
            raise RuntimeError("`mvn` not found; install Maven (apt-get install -y maven)")
        build = base / ".build"
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir()
        (build / "pom.xml").write_text(TOOLS_POM.format(version=version))
        staging = build / "jars"
        result = subprocess.run(
            [
                mvn,
                "-B",
                "-q",
                "-f",
                str(build / "pom.xml"),
                f"{DEPENDENCY_PLUGIN}:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"mvn copy-dependencies failed ({result.returncode}):\n{result.stdout[-4000:]}"
            )
        tools_jar = f"kafka-tools-{version}.jar"
        if not (staging / tools_jar).exists():
            raise RuntimeError(f"mvn succeeded but {tools_jar} is not in {staging}")
        have = {_jar_artifact(p.name) for p in broker_libs.glob("*.jar")} if broker_libs.is_dir() else set()
        for old in base.glob("*.jar"):
            old.unlink()
        kept = []
        for jar in sorted(staging.glob("*.jar")):
            if _jar_artifact(jar.name) not in have:
                jar.rename(base / jar.name)
                kept.append(jar.name)
        shutil.rmtree(build, ignore_errors=True)
        marker.write_text(
            f"kafka-tools {version}; broker libs {broker_libs}\n" + "".join(f"{k}\n" for k in kept)
        )
    return base


_TOOL_LOG4J = """\
status = error
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = ERR
"""


def parse_end_to_end_latency(output: str) -> dict[str, float]:
    """`Avg latency: 1.2345 ms` and `Percentiles: 50th = 1, 99th = 3, 99.9th = 7` (integer ms)."""
    avg = re.search(r"Avg latency: ([\d.]+) ms", output)
    pct = re.search(r"Percentiles: 50th = (\d+), 99th = (\d+), 99\.9th = (\d+)", output)
    if avg is None or pct is None:
        raise RuntimeError(f"cannot parse EndToEndLatency output:\n{output[-3000:]}")
    return {
        "avg_ms": float(avg.group(1)),
        "p50_ms": float(pct.group(1)),
        "p99_ms": float(pct.group(2)),
        "p999_ms": float(pct.group(3)),
    }


def kafka_tool_end_to_end_latency(
    libs_dir: Path,
    bootstrap: str,
    *,
    messages: int = 2000,
    size: int = 200,
    acks: str = "all",
    topic: str | None = None,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """Kafka's own EndToEndLatency (acks=all, 1 partition): send one record, poll it, repeat; ms."""
    libs_dir = Path(libs_dir).resolve()
    # libs_dir is <cache>/kafka-<version>/libs (ensure_kafka_libs); the tools go next to it.
    tools = ensure_kafka_tools_jar(cache_dir or libs_dir.parent.parent, broker_libs=libs_dir)
    java = _which("java")
    if java is None:
        raise RuntimeError("`java` not found; install a JRE 17+")
    topic = topic or f"bench.e2e-tool.{uuid.uuid4().hex[:8]}"
    log4j = tools / "log4j2-tool.properties"
    if not log4j.exists():
        log4j.write_text(_TOOL_LOG4J)
    # 4.1.x CLI is positional: broker_list topic num_messages producer_acks message_size_bytes
    # [properties_file]; acks must be "1" or "all". It creates the topic (1 partition, RF 1).
    cmd = [
        java,
        *TOOL_JVM_FLAGS,
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        f"{libs_dir}/*:{tools}/*",
        "org.apache.kafka.tools.EndToEndLatency",
        bootstrap,
        topic,
        str(messages),
        acks,
        str(size),
    ]
    started = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(
            f"EndToEndLatency failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        )
    found: dict[str, Any] = parse_end_to_end_latency(result.stdout)
    found.update(
        messages=messages,
        size=size,
        acks=acks,
        topic=topic,
        wall_seconds=round(wall, 2),
        percentile_resolution_ms=1.0,
    )
    return found


async def our_kafka_hop_async(
    bootstrap: str, *, messages: int = 2000, size: int = 200, topic: str | None = None
) -> dict[str, Any]:
    """One hop with our clients (make_producer, EventConsumer's consumer settings), 1 partition:
    produce one record, wait until the consumer returns it, repeat; ms."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from emporium_events.kafka import make_producer

    topic = topic or f"bench.e2e-ours.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-references")
    await admin.start()
    try:
        # One partition, like the tool (auto-creation would give num.partitions=3).
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()

    group = f"bench-hop-{uuid.uuid4().hex[:8]}"
    producer = make_producer(bootstrap, client_id="bench-hop")
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_interval_ms=300_000,
        metadata_max_age_ms=5_000,
    )
    await producer.start()
    await consumer.start()
    try:
        deadline = time.monotonic() + 60
        while not consumer.assignment():  # join the group and get the partition first
            await consumer.getmany(timeout_ms=100)
            if time.monotonic() > deadline:
                raise RuntimeError(f"consumer got no assignment for {topic} within 60 s")
        rng = random.Random(0)
        latencies: list[float] = []
        for _ in range(messages):
            value = bytes([rng.randrange(65, 91)]) * size
            begin = time.perf_counter_ns()
            delivery = await producer.send(topic, value)
            record = await asyncio.wait_for(consumer.getone(), timeout=60)
            elapsed = time.perf_counter_ns() - begin
            await delivery
            if record.value != value:
                raise RuntimeError(f"read a different record than the one sent (offset {record.offset})")
            latencies.append(elapsed / 1e6)
    finally:
        await consumer.stop()
        await producer.stop()
    ordered = sorted(latencies)
    return {
        "avg_ms": sum(latencies) / len(latencies),
        "p50_ms": _percentile(ordered, 0.5),
        "p99_ms": _percentile(ordered, 0.99),
        "p999_ms": _percentile(ordered, 0.999),
        "max_ms": ordered[-1],
        "messages": messages,
        "size": size,
        "acks": "all",
        "topic": topic,
    }


def our_kafka_hop(bootstrap: str, *, messages: int = 2000, size: int = 200) -> dict[str, Any]:
    """our_kafka_hop_async in a fresh event loop (call it from a thread if one already runs)."""
    return asyncio.run(our_kafka_hop_async(bootstrap, messages=messages, size=size))


# ---------------------------------------------------------------------------------------------
# CLI


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def _selftest(args: argparse.Namespace) -> dict[str, Any]:
    """Temp broker + PostgreSQL cluster + the catalog service; every reference, short."""
    from emporium_devstack.kafka import KafkaBroker, ensure_kafka_libs
    from emporium_devstack.postgres import PostgresCluster
    from emporium_devstack.stack import http_status

    root = _repo_root()
    parts = set(args.only or ("pg", "kafka", "http"))
    cache = Path(os.environ.get("EMPORIUM_CACHE", root / ".cache"))
    found: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="emporium-refs-") as tmp:
        libs = ensure_kafka_libs(cache)
        broker = KafkaBroker(libs_dir=libs, data_dir=Path(tmp) / "kafka")
        cluster = PostgresCluster(data_dir=Path(tmp) / "pg" / "data")
        catalog: subprocess.Popen[bytes] | None = None
        try:
            broker.start()
            cluster.init()
            cluster.start(fast=args.fast_postgres)
            print(f"kafka {broker.bootstrap}, postgres :{cluster.port}", file=sys.stderr, flush=True)

            if "pg" in parts:
                cluster.ensure_database("bench_reference", "bench_reference", "bench")
                found["pgbench_order_outbox"] = pgbench_order_outbox(
                    cluster.bindir,
                    host="127.0.0.1",
                    port=cluster.port or 0,
                    user="bench_reference",
                    password="bench",
                    database="bench_reference",
                    seconds=args.seconds,
                )
                print(json.dumps(found["pgbench_order_outbox"]), file=sys.stderr, flush=True)
            if "kafka" in parts:
                found["kafka_tool_end_to_end_latency"] = kafka_tool_end_to_end_latency(
                    libs, broker.bootstrap, messages=args.messages
                )
                print(json.dumps(found["kafka_tool_end_to_end_latency"]), file=sys.stderr, flush=True)
                found["our_kafka_hop"] = our_kafka_hop(broker.bootstrap, messages=args.messages)
                print(json.dumps(found["our_kafka_hop"]), file=sys.stderr, flush=True)
            if "http" not in parts:
                return found

            cluster.ensure_database("catalog", "catalog", "emporium-catalog-dev")
            port = free_port()
            env = dict(
                os.environ,
                CATALOG_DATABASE_URL=cluster.url("catalog", "catalog", "emporium-catalog-dev"),
                CATALOG_KAFKA_BOOTSTRAP=broker.bootstrap,
                CATALOG_PORT=str(port),
                CATALOG_LOG_LEVEL="WARNING",
            )
            log_path = Path(tmp) / "catalog.log"
            with open(log_path, "wb") as log:
                subprocess.run(
                    [sys.executable, "-m", "catalog", "migrate"],
                    cwd=root,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    check=True,
                )
                catalog = subprocess.Popen(
                    [sys.executable, "-m", "catalog", "serve"],
                    cwd=root,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            # A page of 20 real products, like the demo data (the list would be empty otherwise).
            cluster.psql(
                "INSERT INTO products (id, sku, name, description, price_cents, currency, category,"
                " created_at, updated_at) SELECT gen_random_uuid(), 'REF-' || i, 'Reference kettle ' || i,"
                " 'A kettle for the reference measurements', 1000 + i, 'USD', 'kitchen', now(), now()"
                " FROM generate_series(1, 50) AS i",
                db="catalog",
            )
            deadline = time.monotonic() + 60
            while http_status(f"http://127.0.0.1:{port}/readyz") != 200:
                if catalog.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"catalog did not get ready:\n{log_tail(log_path)}")
                time.sleep(0.2)
            path = "/products?page_size=20"
            found["http_direct"] = http_read_rate(f"http://127.0.0.1:{port}{path}", seconds=args.seconds)
            print(json.dumps(found["http_direct"]), file=sys.stderr, flush=True)
            with nginx_proxy(port) as nginx_port:
                found["http_nginx"] = http_read_rate(
                    f"http://127.0.0.1:{nginx_port}{path}", seconds=args.seconds
                )
            print(json.dumps(found["http_nginx"]), file=sys.stderr, flush=True)
            # Again, to see how much of a difference is noise (2 cores shared with wrk itself).
            found["http_direct_again"] = http_read_rate(
                f"http://127.0.0.1:{port}{path}", seconds=args.seconds
            )
            print(json.dumps(found["http_direct_again"]), file=sys.stderr, flush=True)
        finally:
            if catalog is not None and catalog.poll() is None:
                os.killpg(catalog.pid, signal.SIGTERM)
                try:
                    catalog.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(catalog.pid, signal.SIGKILL)
                    catalog.wait()
            broker.stop()
            cluster.stop()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="name", required=True)

    p = sub.add_parser("pgbench_order_outbox", help="pgbench: orders + outbox insert per transaction")
    p.add_argument(
        "--bindir", type=Path, default=None, help="PostgreSQL bindir (default: found like devstack)"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--database", required=True)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--protocol", default="simple", choices=["simple", "extended", "prepared"])

    p = sub.add_parser("http_read_rate", help="wrk --latency against a URL")
    p.add_argument("url")
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)

    p = sub.add_parser("nginx_proxy", help="nginx in front of a port; wrk through it (or --hold)")
    p.add_argument("upstream_port", type=int)
    p.add_argument("--path", default="/products?page_size=20")
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--hold", action="store_true", help="print the port and wait for Ctrl-C instead")

    p = sub.add_parser("kafka_tool_end_to_end_latency", help="Kafka's EndToEndLatency tool")
    p.add_argument("bootstrap")
    p.add_argument("--libs-dir", type=Path, default=None, help="broker libs (default .cache/kafka-<v>/libs)")
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--size", type=int, default=200)

    p = sub.add_parser("our_kafka_hop", help="one hop with our producer/consumer settings")
    p.add_argument("bootstrap")
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--size", type=int, default=200)

    p = sub.add_parser("ensure_kafka_tools_jar", help="fetch kafka-tools next to the broker libs")
    p.add_argument("--cache-dir", type=Path, default=None)

    sub.add_parser("ensure_wrk", help="install wrk if missing")
    sub.add_parser("ensure_nginx", help="install nginx if missing")

    p = sub.add_parser("selftest", help="temp broker + cluster + catalog; run every reference")
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--fast-postgres", action="store_true", help="fsync off (default: on, like make run)")
    p.add_argument("--only", action="append", choices=["pg", "kafka", "http"], help="repeatable; default all")

    args = parser.parse_args(argv)
    cache = Path(os.environ.get("EMPORIUM_CACHE", _repo_root() / ".cache"))
    result: Any
    if args.name == "pgbench_order_outbox":
        bindir = args.bindir
        if bindir is None:
            from emporium_devstack.postgres import find_pg_bindir

            bindir = find_pg_bindir()
            if bindir is None:
                parser.error("no PostgreSQL bindir found; pass --bindir")
        result = pgbench_order_outbox(
            bindir,
            host=args.host,
            port=args.port,
            user=args.user,
            password=args.password,
            database=args.database,
            seconds=args.seconds,
            clients=args.clients,
            protocol=args.protocol,
        )
    elif args.name == "http_read_rate":
        result = http_read_rate(
            args.url, seconds=args.seconds, connections=args.connections, threads=args.threads
        )
    elif args.name == "nginx_proxy":
        with nginx_proxy(args.upstream_port) as port:
            if args.hold:
                print(
                    f"nginx on http://127.0.0.1:{port} -> 127.0.0.1:{args.upstream_port}; Ctrl-C stops it",
                    flush=True,
                )
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        time.sleep(3600)
                return 0
            result = http_read_rate(
                f"http://127.0.0.1:{port}{args.path}", seconds=args.seconds, connections=args.connections
            )
    elif args.name == "kafka_tool_end_to_end_latency":
        libs = args.libs_dir or cache / f"kafka-{KAFKA_VERSION}" / "libs"
        result = kafka_tool_end_to_end_latency(libs, args.bootstrap, messages=args.messages, size=args.size)
    elif args.name == "our_kafka_hop":
        result = our_kafka_hop(args.bootstrap, messages=args.messages, size=args.size)
    elif args.name == "ensure_kafka_tools_jar":
        result = str(ensure_kafka_tools_jar(args.cache_dir or cache))
    elif args.name == "ensure_wrk":
        result = ensure_wrk()
    elif args.name == "ensure_nginx":
        result = ensure_nginx()
    else:
        result = _selftest(args)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

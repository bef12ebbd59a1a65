"""Run the whole Emporium system as local processes: Kafka, PostgreSQL, an SMTP sink, the five
services and the gateway.

    with Stack(root=repo_root(), cache_dir=..., work_dir=..., free_ports=True) as stack:
        stack.gateway_url            # http://127.0.0.1:PORT
        stack.services["orders"].kill(); stack.services["orders"].restart()

    with Stack(..., brokers=3, replicas=2) as stack:   # a 3-node Kafka cluster, 2 of each service
        stack.replicas["orders"]     # [orders-1, orders-2]; stack.services["orders"] is orders-1
        stack.kafka.node(2).kill(); stack.kafka.node(2).start()

Every service is started as ``[python, "-m", <svc>, "serve"]`` (cwd = repo root) in its own
process group and is configured only by ``<SVC>_*`` environment variables. Output is prefixed
line by line (``catalog       | ...``) on stdout (``echo=True``) and written to
``log_dir/<svc>.log`` (``<svc>-<n>`` for replica n when there are several).
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Literal

from .jaeger import Jaeger, ensure_jaeger
from .kafka import KafkaCluster, ensure_kafka_libs
from .ports import free_port, port_open
from .postgres import PostgresCluster
from .prometheus import Monitoring

SERVICES: tuple[str, ...] = ("catalog", "inventory", "orders", "payments", "notifications")
GATEWAY = "gateway"
DEFAULT_PORTS: dict[str, int] = {
    GATEWAY: 8000,
    "catalog": 8001,
    "inventory": 8002,
    "orders": 8003,
    "payments": 8004,
    "notifications": 8005,
}
DEFAULT_SMTP_PORT = 1025
DEFAULT_ADMIN_EMAIL = "admin@emporium.local"
DEFAULT_ADMIN_PASSWORD = "admin-password-change-me"
_PREFIX_WIDTH = max(len(n) for n in (*SERVICES, GATEWAY, "smtp")) + 2  # "-2": a replica's number
# A consumer group spreads a topic's partitions over its members: a replica beyond the topics'
# partition count (emporium_kit.runtime.TOPIC_PARTITIONS) would get none and never be ready.
MAX_REPLICAS = 3
# Replica n (from 2) of a service on a fixed port: its first replica's port + 10 * (n - 1), so
# orders-2 is on 8013 next to orders-1 on 8003.
_REPLICA_PORT_STEP = 10
_STOP_TIMEOUT = 10.0
_POLL = 0.2

# Proxies from the environment must never see requests to 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_STDOUT_LOCK = threading.Lock()


def repo_root() -> Path:
    """The repository root: …/devstack/src/emporium_devstack → parents[3], else the cwd."""
    candidate = Path(__file__).resolve().parents[3]
    if (candidate / "pyproject.toml").exists() and (candidate / "services").is_dir():
        return candidate
    cwd = Path.cwd().resolve()
    for path in (cwd, *cwd.parents):
        if (path / "pyproject.toml").exists() and (path / "services").is_dir():
            return path
    return cwd


def http_status(url: str, *, timeout: float = 1.0) -> int | None:
    """HTTP status of GET url (no proxies), or None if no HTTP answer at all."""
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError, ValueError):
        return None


class ServiceProcess:
    """One long-running child process (a service, the gateway or the SMTP sink).

    Runs in its own process group; a reader thread copies its merged stdout/stderr line by line
    to the log file and (if `echo`) to our stdout with a ``name | `` prefix. The last lines are
    kept in memory for error messages (`tail()`).
    """

    def __init__(
        self,
        name: str,
        *,
        cmd: list[str],
        env: dict[str, str],
        cwd: Path,
        port: int,
        log_path: Path | None,
        echo: bool = True,
        ready_path: str | None = "/readyz",
    ) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.env = dict(env)  # mutable: restart() uses whatever is here then
        self.cwd = Path(cwd)
        self.port = port
        self.log_path = log_path
        self.echo = echo
        self.ready_path = ready_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._lines: collections.deque[str] = collections.deque(maxlen=200)
        self._started_once = False

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else f"exit={self.returncode}"
        return f"<ServiceProcess {self.name} :{self.port} {state}>"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def start(self) -> None:
        if self.running:
            return
        self._reap()
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            mode = "ab" if self._started_once else "wb"
            with open(self.log_path, mode) as fh:
                fh.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} start: {' '.join(self.cmd)}\n".encode())
        self._proc = subprocess.Popen(
            self.cmd,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._started_once = True
        atexit.register(self._atexit_kill)
        self._reader = threading.Thread(
            target=self._pump, args=(self._proc,), name=f"log-{self.name}", daemon=True
        )
        self._reader.start()

    def ready(self) -> bool:
        """True if the process runs and answers its readiness check (HTTP 200 or open port)."""
        if not self.running:
            return False
        if self.ready_path is None:
            return port_open("127.0.0.1", self.port)
        return http_status(self.url + self.ready_path) == 200

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            if self.ready():
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"{self.name} not ready within {timeout:.0f}s; output tail:\n{self.tail()}"
                )
            time.sleep(_POLL)

    def check_alive(self) -> None:
        """Raise RuntimeError with the output tail if the process has exited."""
        if self._proc is not None and self._proc.poll() is not None:
            self._join_reader()
            raise RuntimeError(
                f"{self.name} exited with code {self._proc.returncode}; output tail:\n{self.tail()}"
            )

    def signal(self, sig: int) -> None:
        """Send `sig` to the whole process group (no-op if not running)."""
        if self._proc is None or self._proc.poll() is not None:
            return
        try:
            os.killpg(self._proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL (crash simulation)."""
        self.signal(signal.SIGKILL)
        self._wait(None)
        self._reap()

    def terminate(self, timeout: float = _STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL if still alive after `timeout` seconds."""
        self.signal(signal.SIGTERM)
        if not self._wait(timeout):
            self.signal(signal.SIGKILL)
            self._wait(None)
        self._reap()

    def restart(self, *, wait: bool = True, timeout: float = 60) -> None:
        """terminate() then start() with the same command, env and port; optionally wait ready."""
        self.terminate()
        self.start()
        if wait:
            self.wait_ready(timeout)

    def tail(self, lines: int = 40) -> str:
        out = list(self._lines)[-lines:]
        return "\n".join(out) if out else "(no output)"

    # internals

    def _wait(self, timeout: float | None) -> bool:
        proc = self._proc
        if proc is None:
            return True
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        # The leader is gone; take down anything left in its group (e.g. worker children).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return True

    def _reap(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            self._join_reader()
            atexit.unregister(self._atexit_kill)

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=2)
            self._reader = None

    def _atexit_kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _pump(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        prefix = f"{self.name:<{_PREFIX_WIDTH}} | "
        log = open(self.log_path, "ab", buffering=0) if self.log_path is not None else None
        try:
            for raw in iter(proc.stdout.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                self._lines.append(line)
                if log is not None:
                    log.write(raw if raw.endswith(b"\n") else raw + b"\n")
                if self.echo:
                    with _STDOUT_LOCK:
                        try:
                            sys.stdout.write(prefix + line + "\n")
                            sys.stdout.flush()
                        except (OSError, ValueError):
                            pass
        finally:
            proc.stdout.close()
            if log is not None:
                log.close()


class Stack:
    """Kafka + PostgreSQL + SMTP sink + five services + gateway, as local processes.

    Parameters:
      root            repository root (cwd of every service process)
      cache_dir       where Kafka's jars are cached (``cache_dir/kafka-<version>/libs``)
      work_dir        state: ``kafka/`` (broker data, kept across runs), ``postgres/`` (cluster),
                      ``mail/`` (SMTP sink maildir), ``logs/`` (default log_dir)
      gateway_port, service_ports   fixed ports (defaults 8000 and 8001..8005)
      free_ports      pick free ports for everything (gateway, services, SMTP, PostgreSQL)
      fast_postgres   fsync off etc. (tests)
      env             extra environment for every process, applied last (so it may override
                      anything the stack sets)
      kafka_bootstrap use this external Kafka instead of starting a broker
      brokers         Kafka nodes to start (``KafkaCluster``; 1 = a single broker, as always; from
                      3 on, replication factor 3 and ``min.insync.replicas`` 2)
      replicas        processes per service (1..3), each on its own port; the gateway spreads
                      requests over them and orders spreads its catalog calls. ``services[name]``
                      is the first replica, ``replicas[name]`` all of them. Migrations run once
                      per service. The gateway stays one process (stateless; replicas of it
                      would need a load balancer in front, which in Kubernetes is its Service)
      database_urls   ``{name: sqlalchemy URL}``: use these external databases for the named
                      services/gateway (no local PostgreSQL is started if all six are given)
      wait_for        "gateway" (its /readyz, which covers all services), "services" (each
                      service's /readyz) or "none"
      include_gateway None = only if gateway/src/gateway/__main__.py exists
      observe         also run Jaeger (built once into ``cache_dir``) and export every
                      process's spans to it over OTLP (``OTEL_EXPORTER_OTLP_ENDPOINT``), unless
                      the environment already names an OTLP endpoint
      monitor         also run Prometheus and Alertmanager (``prometheus.Monitoring``) scraping
                      every process, with deploy/observability's rules, once all are ready
                      (None: as ``observe``)
    """

    def __init__(
        self,
        *,
        root: Path,
        cache_dir: Path,
        work_dir: Path,
        gateway_port: int = DEFAULT_PORTS[GATEWAY],
        service_ports: dict[str, int] | None = None,
        free_ports: bool = False,
        fast_postgres: bool = False,
        env: dict[str, str] | None = None,
        admin_email: str | None = None,
        admin_password: str | None = None,
        python: str = sys.executable,
        log_dir: Path | None = None,
        echo: bool = True,
        kafka_bootstrap: str | None = None,
        database_urls: dict[str, str] | None = None,
        smtp_port: int | None = None,
        log_level: str | None = None,
        wait_for: Literal["gateway", "services", "none"] = "gateway",
        include_gateway: bool | None = None,
        observe: bool = False,
        monitor: bool | None = None,
        brokers: int = 1,
        replicas: int = 1,
    ) -> None:
        if not 1 <= replicas <= MAX_REPLICAS:
            raise ValueError(
                f"replicas must be 1 to {MAX_REPLICAS} (one partition each at least), not {replicas}"
            )
        if brokers < 1:
            raise ValueError(f"brokers must be at least 1, not {brokers}")
        if kafka_bootstrap and brokers != 1:
            raise ValueError("brokers: the stack starts no Kafka of its own when kafka_bootstrap is given")
        self.brokers = brokers
        self.replica_count = replicas
        self.root = Path(root).resolve()
        self.cache_dir = Path(cache_dir).resolve()
        self.work_dir = Path(work_dir).resolve()
        self.log_dir = Path(log_dir).resolve() if log_dir is not None else self.work_dir / "logs"
        self.maildir = self.work_dir / "mail"
        self.python = python
        self.echo = echo
        self.fast_postgres = fast_postgres
        self.extra_env = dict(env or {})
        self.admin_email = admin_email or os.environ.get("ADMIN_EMAIL") or DEFAULT_ADMIN_EMAIL
        self.admin_password = admin_password or os.environ.get("ADMIN_PASSWORD") or DEFAULT_ADMIN_PASSWORD
        self.log_level = (log_level or os.environ.get("EMPORIUM_LOG_LEVEL") or "INFO").upper()
        self.external_kafka = kafka_bootstrap
        self.external_databases = dict(database_urls or {})
        if include_gateway is None:
            include_gateway = (self.root / "gateway" / "src" / "gateway" / "__main__.py").exists()
        self.include_gateway = include_gateway
        if wait_for == "gateway" and not include_gateway:
            wait_for = "services"
        self.wait_for = wait_for
        self.free_ports = free_ports
        self.observe = observe
        self.monitor = observe if monitor is None else monitor
        self.monitoring: Monitoring | None = None

        if free_ports:
            self.ports = {name: free_port() for name in (GATEWAY, *SERVICES)}
            self.smtp_port = smtp_port or free_port()
        else:
            self.ports = dict(DEFAULT_PORTS)
            self.ports.update(service_ports or {})
            self.ports[GATEWAY] = gateway_port
            self.smtp_port = smtp_port or DEFAULT_SMTP_PORT
        # ports[name] is the first replica's; replica_ports[name] every replica's, in order.
        self.replica_ports: dict[str, list[int]] = {
            name: [
                self.ports[name]
                if n == 1
                else free_port()
                if free_ports
                else self.ports[name] + _REPLICA_PORT_STEP * (n - 1)
                for n in range(1, replicas + 1)
            ]
            for name in SERVICES
        }

        self.kafka: KafkaCluster | None = None
        self.postgres: PostgresCluster | None = None
        self.smtp: ServiceProcess | None = None
        self.jaeger: Jaeger | None = None
        self.services: dict[str, ServiceProcess] = {}  # the gateway, and each service's first replica
        self.replicas: dict[str, list[ServiceProcess]] = {}  # each service's replicas, in order
        self.timings: dict[str, float] = {}
        self._lock = threading.Lock()
        self._started = False

    # addresses

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports[GATEWAY]}"

    def service_url(self, name: str) -> str:
        """The service's (first replica's) base URL."""
        return f"http://127.0.0.1:{self.ports[name]}"

    def service_urls(self, name: str) -> list[str]:
        """Every replica's base URL, in order (one for the gateway)."""
        ports = self.replica_ports.get(name, [self.ports[name]])
        return [f"http://127.0.0.1:{port}" for port in ports]

    @property
    def processes(self) -> list[ServiceProcess]:
        """Every service replica, then the gateway: what runs besides Kafka, PostgreSQL & co."""
        found = [proc for name in SERVICES for proc in self.replicas.get(name, [])]
        return found + ([self.services[GATEWAY]] if GATEWAY in self.services else [])

    @property
    def kafka_bootstrap(self) -> str:
        if self.external_kafka:
            return self.external_kafka
        if self.kafka is None:
            raise RuntimeError("Kafka not started yet")
        return self.kafka.bootstrap

    @staticmethod
    def database_password(name: str) -> str:
        return f"emporium-{name}-dev"

    def database_url(self, name: str) -> str:
        """SQLAlchemy (psycopg) URL of `name`'s database, as `name`'s own role."""
        if name in self.external_databases:
            return self.external_databases[name]
        if self.postgres is None or self.postgres.port is None:
            raise RuntimeError("PostgreSQL not started yet")
        return self.postgres.url(name, name, self.database_password(name))

    @property
    def names(self) -> tuple[str, ...]:
        """Processes the stack runs: the five services, then the gateway if included."""
        return (*SERVICES, GATEWAY) if self.include_gateway else SERVICES

    # lifecycle

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 120) -> None:
        """Bring everything up; return once ready (see `wait_for`). On failure, stop and raise."""
        with self._lock:
            if self._started:
                return
            self._started = True
        t_all = time.monotonic()
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - t_all

    def _start(self, timeout: float) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.maildir.mkdir(parents=True, exist_ok=True)
        self._check_ports_free()

        # Kafka (JVM start-up is the slowest step) runs in a thread while PostgreSQL, the SMTP
        # sink and the migrations proceed; services are only started once it is ready.
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="stack")
        try:
            kafka_future = pool.submit(self._start_kafka, timeout) if not self.external_kafka else None
            jaeger_future = pool.submit(self._start_jaeger, timeout) if self.observe else None
            self._start_smtp()
            self._start_postgres(timeout)
            self._migrate(pool)
            smtp = self.smtp
            assert smtp is not None
            smtp.wait_ready(timeout)
            if kafka_future is not None:
                t = time.monotonic()
                kafka_future.result()
                self.timings["kafka_wait"] = time.monotonic() - t
            if jaeger_future is not None:
                jaeger_future.result()
        finally:
            pool.shutdown(wait=True)

        t = time.monotonic()
        for name in SERVICES:
            self.replicas[name] = [self._make_process(name, n) for n in range(1, self.replica_count + 1)]
            self.services[name] = self.replicas[name][0]
        if self.include_gateway:
            self.services[GATEWAY] = self._make_process(GATEWAY)
        for proc in self.processes:
            proc.start()
        self._wait_ready(timeout)
        self.timings["services"] = time.monotonic() - t
        if self.monitor:
            t = time.monotonic()
            # One job per service (the alert rules group by it), one target per replica.
            targets = {
                name: [url.removeprefix("http://") for url in self.service_urls(name)] for name in self.names
            }
            self.monitoring = Monitoring(
                root=self.root,
                work_dir=self.work_dir / "monitoring",
                log_dir=self.log_dir,
                targets=targets,
                free_ports=self.free_ports,
            )
            self.monitoring.start(timeout=timeout)
            self.timings["monitoring"] = time.monotonic() - t

    def stop(self) -> None:
        """Stop everything that runs (gateway, services, SMTP, Kafka, PostgreSQL). Idempotent."""
        errors: list[str] = []
        if self.monitoring is not None:
            self.monitoring.stop()
        gateway = [p for p in self.processes if p.name == GATEWAY]
        others = [p for p in self.processes if p.name != GATEWAY]
        # The gateway first (no new requests), then all services in parallel.
        for group in (gateway, others):
            for proc in group:
                proc.signal(signal.SIGTERM)
            deadline = time.monotonic() + _STOP_TIMEOUT
            for proc in group:
                if not proc._wait(max(0.0, deadline - time.monotonic())):
                    proc.signal(signal.SIGKILL)
                    proc._wait(None)
                proc._reap()
        if self.jaeger is not None:
            try:
                self.jaeger.stop()
            except Exception as exc:
                errors.append(f"jaeger: {exc}")
        if self.smtp is not None:
            try:
                self.smtp.terminate(timeout=5)
            except Exception as exc:
                errors.append(f"smtp: {exc}")
        if self.kafka is not None:
            try:
                self.kafka.stop()
            except Exception as exc:
                errors.append(f"kafka: {exc}")
        if self.postgres is not None:
            try:
                self.postgres.stop(mode="fast")
            except Exception as exc:
                errors.append(f"postgres: {exc}")
        with self._lock:
            self._started = False
        if errors:
            raise RuntimeError("errors while stopping the stack:\n" + "\n".join(errors))

    # phases

    def _check_ports_free(self) -> None:
        busy = [
            f"{name}:{port}"
            for name in self.names
            for port in self.replica_ports.get(name, [self.ports[name]])
            if port_open("127.0.0.1", port)
        ]
        if port_open("127.0.0.1", self.smtp_port):
            busy.append(f"smtp:{self.smtp_port}")
        if busy:
            raise RuntimeError(
                f"ports already in use on 127.0.0.1: {', '.join(busy)} (another stack running? "
                "stop it, or use free_ports=True / other ports)"
            )

    def _start_jaeger(self, timeout: float) -> None:
        t = time.monotonic()
        binary = ensure_jaeger(self.cache_dir)
        self.timings["jaeger_build"] = time.monotonic() - t

        # The usual ports when they are free (make run), else free ones.
        def usual(port: int) -> int | None:
            return None if self.free_ports or port_open("127.0.0.1", port) else port

        jaeger = Jaeger(
            binary=binary,
            data_dir=self.work_dir / "jaeger",
            ui_port=usual(16686),
            otlp_grpc_port=usual(4317),
            otlp_http_port=usual(4318),
        )
        t = time.monotonic()
        jaeger.start(timeout=timeout)
        self.jaeger = jaeger
        self.timings["jaeger"] = time.monotonic() - t

    def _start_kafka(self, timeout: float) -> None:
        t = time.monotonic()
        libs = ensure_kafka_libs(self.cache_dir)
        self.timings["kafka_libs"] = time.monotonic() - t
        t = time.monotonic()
        # One broker keeps the folder it always had; a cluster of N has one of its own.
        data_dir = self.work_dir / ("kafka" if self.brokers == 1 else f"kafka-{self.brokers}-nodes")
        self.kafka = KafkaCluster(libs_dir=libs, data_dir=data_dir, size=self.brokers, log_dir=self.log_dir)
        self.kafka.start(timeout=timeout)
        self.timings["kafka"] = time.monotonic() - t

    def _start_postgres(self, timeout: float) -> None:
        local = [name for name in (*SERVICES, GATEWAY) if name not in self.external_databases]
        if not local:
            return
        t = time.monotonic()
        port_file = self.work_dir / "postgres.port"
        port: int | None = None
        if self.free_ports:
            port = None
        elif port_file.exists():
            saved = int(port_file.read_text().strip() or 0)
            port = saved if saved and not port_open("127.0.0.1", saved) else None
        self.postgres = PostgresCluster(
            data_dir=self.work_dir / "postgres", port=port, log_path=self.log_dir / "postgres.log"
        )
        initdb = self.postgres.init()
        self.timings["postgres_initdb"] = time.monotonic() - t if initdb else 0.0
        self.postgres.start(timeout=timeout, fast=self.fast_postgres)
        port_file.write_text(f"{self.postgres.port}\n")
        for name in local:
            self.postgres.ensure_database(name, name, self.database_password(name))
        self.timings["postgres"] = time.monotonic() - t

    def _start_smtp(self) -> None:
        env = self._base_env()
        devstack_src = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (devstack_src, env.get("PYTHONPATH", "")) if p)
        self.smtp = ServiceProcess(
            "smtp",
            cmd=[
                self.python,
                "-m",
                "emporium_devstack.smtp",
                "--maildir",
                str(self.maildir),
                "--port",
                str(self.smtp_port),
            ],
            env=env,
            cwd=self.root,
            port=self.smtp_port,
            log_path=self.log_dir / "smtp.log",
            echo=self.echo,
            ready_path=None,
        )
        self.smtp.start()

    def _migrate(self, pool: concurrent.futures.ThreadPoolExecutor) -> None:
        """`migrate` of every service (and gateway migrate + seed-admin), in parallel."""
        t = time.monotonic()
        jobs: dict[str, list[list[str]]] = {name: [["migrate"]] for name in SERVICES}
        if self.include_gateway:
            jobs[GATEWAY] = [["migrate"], ["seed-admin"]]
        futures = {name: pool.submit(self._run_steps, name, steps) for name, steps in jobs.items()}
        failures: list[str] = []
        for future in futures.values():
            try:
                future.result()
            except RuntimeError as exc:
                failures.append(str(exc))
        self.timings["migrations"] = time.monotonic() - t
        if failures:
            raise RuntimeError("migrations failed:\n\n" + "\n\n".join(failures))

    def _run_steps(self, name: str, steps: list[list[str]]) -> None:
        env = self._env_for(name)
        log_path = self.log_dir / f"{name}-migrate.log"
        with open(log_path, "wb") as log:
            for args in steps:
                cmd = [self.python, "-m", name, *args]
                log.write(f"==== {' '.join(cmd)}\n".encode())
                log.flush()
                result = subprocess.run(
                    cmd,
                    check=False,
                    cwd=self.root,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                log.write(result.stdout)
                text = result.stdout.decode("utf-8", "replace")
                if self.echo:
                    prefix = f"{name:<{_PREFIX_WIDTH}} | "
                    with _STDOUT_LOCK:
                        for line in text.splitlines():
                            sys.stdout.write(f"{prefix}[{args[0]}] {line}\n")
                        sys.stdout.flush()
                if result.returncode != 0:
                    tail = "\n".join(text.splitlines()[-40:])
                    raise RuntimeError(f"`{' '.join(cmd[1:])}` failed with code {result.returncode}:\n{tail}")

    def _wait_ready(self, timeout: float) -> None:
        if self.wait_for == "none":
            return
        # The gateway is ready once one replica of each service is: wait for every replica too.
        replicas = [proc for name in SERVICES for proc in self.replicas[name]]
        targets = [self.services[GATEWAY], *replicas] if self.wait_for == "gateway" else replicas
        deadline = time.monotonic() + timeout
        pending = list(targets)
        while True:
            for proc in self.processes:
                proc.check_alive()
            pending = [p for p in pending if not p.ready()]
            if not pending:
                return
            if time.monotonic() >= deadline:
                detail = "\n\n".join(f"{p.name} (not ready) output tail:\n{p.tail()}" for p in pending)
                if self.wait_for == "gateway":
                    not_ready = [p.name for p in replicas if not p.ready()]
                    detail += f"\n\nservices whose /readyz is not 200: {not_ready or 'none'}"
                raise RuntimeError(f"stack not ready within {timeout:.0f}s:\n{detail}")
            time.sleep(_POLL)

    # environment

    def _base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        if self.jaeger is not None and not (
            env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        ):
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.jaeger.otlp_http_endpoint
        return env

    def _jwt_secret(self) -> str:
        for source in (self.extra_env, os.environ):
            if source.get("GATEWAY_JWT_SECRET"):
                return source["GATEWAY_JWT_SECRET"]
        path = self.work_dir / "jwt-secret"
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        secret = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secret + "\n")
        return secret

    def _bootstrap_or_none(self) -> str | None:
        if self.external_kafka:
            return self.external_kafka
        kafka = self.kafka
        if kafka is None or any(node.port is None for node in kafka.nodes):
            return None
        return kafka.bootstrap

    def _env_for(self, name: str, replica: int = 1) -> dict[str, str]:
        env = self._base_env()
        p = name.upper() + "_"
        env[p + "DATABASE_URL"] = self.database_url(name)
        env[p + "HOST"] = "127.0.0.1"
        env[p + "PORT"] = str(self.replica_ports.get(name, [self.ports[name]])[replica - 1])
        if self.replica_count > 1 and name != GATEWAY:  # which replica a span came from
            attrs = env.get("OTEL_RESOURCE_ATTRIBUTES", "")
            env["OTEL_RESOURCE_ATTRIBUTES"] = ",".join(
                a for a in (attrs, f"service.instance.id={self._process_name(name, replica)}") if a
            )
        env[p + "LOG_LEVEL"] = self.log_level
        # Migrations run while Kafka may still be starting (they do not need it).
        bootstrap = self._bootstrap_or_none()
        if bootstrap is not None:
            env[p + "KAFKA_BOOTSTRAP"] = bootstrap
        if name == "orders":
            # Several replicas: a comma-separated list, taken in turn (adapters/catalog.py).
            env["ORDERS_CATALOG_URL"] = ",".join(self.service_urls("catalog"))
        if name == "notifications":
            env["NOTIFICATIONS_SMTP_HOST"] = "127.0.0.1"
            env["NOTIFICATIONS_SMTP_PORT"] = str(self.smtp_port)
        if name == GATEWAY:
            for svc in SERVICES:
                env[f"GATEWAY_{svc.upper()}_URL"] = ",".join(self.service_urls(svc))
            env["GATEWAY_ADMIN_EMAIL"] = self.admin_email
            env["GATEWAY_ADMIN_PASSWORD"] = self.admin_password
            env["GATEWAY_JWT_SECRET"] = self._jwt_secret()
        env.update(self.extra_env)
        return env

    def _process_name(self, name: str, replica: int) -> str:
        return name if self.replica_count == 1 or name == GATEWAY else f"{name}-{replica}"

    def _make_process(self, name: str, replica: int = 1) -> ServiceProcess:
        process = self._process_name(name, replica)
        env = self._env_for(name, replica)
        return ServiceProcess(
            process,
            cmd=[self.python, "-m", name, "serve"],
            env=env,
            cwd=self.root,
            port=int(env[name.upper() + "_PORT"]),
            log_path=self.log_dir / f"{process}.log",
            echo=self.echo,
        )

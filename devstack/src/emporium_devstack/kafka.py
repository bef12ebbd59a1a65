"""Run a real single-node Apache Kafka broker (KRaft, combined mode) from Maven Central jars.

No create_topics() helper: TopicCommand lives in org.apache.kafka:kafka-tools, which kafka_2.13
does not pull in. Topics are auto-created (num.partitions=3), or use the client's admin API.
"""

from __future__ import annotations

import atexit
import base64
import fcntl
import json
import os
import shutil
import socket
import struct
import subprocess
import time
import uuid
from pathlib import Path

from .ports import free_port, log_tail, port_open, terminate

KAFKA_VERSION = "4.1.2"
# log4j version Kafka 4.1.2 itself pulls in (kafka-server -> log4j-core 2.25.3); Kafka 4.1.2 uses
# slf4j-api 1.7.36, so the one binding is log4j-slf4j-impl (not log4j-slf4j2-impl).
LOG4J_VERSION = "2.25.3"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

POM_TEMPLATE = """\
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.emporium.devstack</groupId>
  <artifactId>kafka-broker-libs</artifactId>
  <version>{kafka_version}</version>
  <packaging>pom</packaging>
  <dependencyManagement>
    <dependencies>
      <dependency>
        <groupId>org.apache.logging.log4j</groupId>
        <artifactId>log4j-bom</artifactId>
        <version>{log4j_version}</version>
        <type>pom</type>
        <scope>import</scope>
      </dependency>
    </dependencies>
  </dependencyManagement>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{kafka_version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
    </dependency>
  </dependencies>
</project>
"""

JVM_FLAGS = (
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
)

_MARKER = ".complete"
_STARTED_LINE = "Kafka Server started"


def _find_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None and name == "java" and os.environ.get("JAVA_HOME"):
        candidate = Path(os.environ["JAVA_HOME"]) / "bin" / "java"
        path = str(candidate) if candidate.exists() else None
    if path is None:
        raise RuntimeError(f"`{name}` not found on PATH; {hint}")
    return path


def ensure_kafka_libs(cache_dir: Path, *, version: str = KAFKA_VERSION) -> Path:
    """Fetch the broker's runtime jars with Maven into `cache_dir/kafka-<version>/libs`.

    Idempotent: a marker written after a successful copy makes later calls return at once.
    Safe to call from several processes at a time (file lock).
    """
    base = Path(cache_dir) / f"kafka-{version}"
    libs = base / "libs"
    marker = base / _MARKER
    if marker.exists() and libs.is_dir():
        return libs
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and libs.is_dir():
            return libs
        mvn = _find_tool("mvn", "install Maven (apt-get install -y maven)")
        pom = base / "pom.xml"
        pom.write_text(POM_TEMPLATE.format(kafka_version=version, log4j_version=LOG4J_VERSION))
        staging = base / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(pom),
            f"{DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ]
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"mvn copy-dependencies failed ({result.returncode}):\n{result.stdout[-4000:]}"
            )
        if not any(staging.glob(f"kafka_2.13-{version}.jar")):
            raise RuntimeError(f"mvn succeeded but kafka_2.13-{version}.jar is not in {staging}")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        marker.write_text(f"kafka {version}\n")
    return libs


def _cluster_id() -> str:
    # Same 22-char form as Kafka's Uuid.toString(); Kafka avoids a leading '-' (CLI parsing).
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not value.startswith("-"):
            return value


def metadata_ready(host: str, port: int, *, timeout: float = 2.0) -> bool:
    """True if a Metadata v0 request is answered with at least one broker."""
    client_id = b"emporium-devstack"
    # header: api_key=3 (Metadata), api_version=0, correlation_id, client_id; body: 0 topics
    payload = struct.pack(">hhih", 3, 0, 1, len(client_id)) + client_id + struct.pack(">i", 0)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(payload)) + payload)
            head = _recv_exact(sock, 4)
            (size,) = struct.unpack(">i", head)
            body = _recv_exact(sock, size)
    except OSError:
        return False
    if len(body) < 8:
        return False
    correlation_id, broker_count = struct.unpack(">ii", body[:8])
    return bool(correlation_id == 1 and broker_count >= 1)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed")
        chunks += chunk
    return bytes(chunks)


class KafkaBroker:
    """One Kafka process acting as broker and KRaft controller on 127.0.0.1.

    Layout of `data_dir`: server.properties, log4j2.properties, ports.json (ports are kept across
    restarts so clients can reconnect to the same address), kraft/ (log.dirs), kafka.log (default
    log file).
    """

    def __init__(
        self,
        *,
        libs_dir: Path,
        data_dir: Path,
        port: int | None = None,
        log_path: Path | None = None,
        advertised_port: int | None = None,
    ) -> None:
        """``advertised_port``: the port clients are told to use (a fault proxy in front of the
        broker, in the fault-injection suite); defaults to the broker's own port."""
        self.advertised_port = advertised_port
        self.libs_dir = Path(libs_dir).resolve()
        self.data_dir = Path(data_dir).resolve()
        self.log_path = Path(log_path).resolve() if log_path else self.data_dir / "kafka.log"
        self._fixed_port = port is not None
        self.port: int | None = port
        self.controller_port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._load_ports()

    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise RuntimeError("broker port not chosen yet; call start() first")
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "kraft"

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 90) -> None:
        """Start the broker and return once it answers a Metadata request."""
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        java = _find_tool("java", "install a JRE 17+ (apt-get install -y openjdk-17-jre-headless)")
        deadline = time.monotonic() + timeout
        attempts = 3
        for attempt in range(1, attempts + 1):
            if self.port is None:
                self.port = free_port()
            if self.controller_port is None:
                self.controller_port = free_port()
                while self.controller_port == self.port:
                    self.controller_port = free_port()
            self._write_config()
            if not (self.log_dir / "meta.properties").exists():
                self._format(java)
            self._save_ports()
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._spawn(java)
            try:
                self._wait_ready(deadline)
                return
            except RuntimeError:
                new_text = self._log_since(log_start)
                self._reap()
                if "Address already in use" in new_text and attempt < attempts:
                    # Ports are only free "a moment ago"; pick new ones (a fixed broker port stays).
                    if not self._fixed_port:
                        self.port = None
                    self.controller_port = None
                    continue
                raise

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM (controlled shutdown), SIGKILL if still alive after `timeout` seconds."""
        proc = self._proc
        if proc is None:
            return
        terminate(proc, timeout=timeout)
        self._reap()

    def kill(self) -> None:
        """SIGKILL the broker (crash simulation); the data dir stays usable for start()."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        self._reap()

    # internals

    def _load_ports(self) -> None:
        path = self.data_dir / "ports.json"
        if not path.exists():
            return
        saved = json.loads(path.read_text())
        if self.port is None:
            self.port = int(saved["port"])
        self.controller_port = int(saved["controller_port"])

    def _save_ports(self) -> None:
        path = self.data_dir / "ports.json"
        path.write_text(json.dumps({"port": self.port, "controller_port": self.controller_port}))

    def _write_config(self) -> None:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.advertised_port or self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.log_dir),
            "num.partitions": "3",
            "auto.create.topics.enable": "true",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Default 9 s session: after kill() a restart waits for the dead incarnation's session
            # to expire before it can re-register (measured 12 s -> see note). Keep it short.
            "broker.session.timeout.ms": "4000",
            "broker.heartbeat.interval.ms": "500",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "log.cleaner.dedupe.buffer.size": "16777216",
        }
        text = "".join(f"{key}={value}\n" for key, value in props.items())
        (self.data_dir / "server.properties").write_text(text)
        # Console appender -> process stdout -> log file, so JVM crash output lands there too.
        # WARN overall; INFO for the class that prints "Kafka Server started".
        log4j = (
            "status = warn\n"
            "appender.out.type = Console\n"
            "appender.out.name = OUT\n"
            "appender.out.target = SYSTEM_OUT\n"
            "appender.out.layout.type = PatternLayout\n"
            "appender.out.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = WARN\n"
            "rootLogger.appenderRef.out.ref = OUT\n"
            "logger.started.name = kafka.server.KafkaRaftServer\n"
            "logger.started.level = INFO\n"
        )
        (self.data_dir / "log4j2.properties").write_text(log4j)

    def _java_cmd(self, java: str, main_class: str, *args: str) -> list[str]:
        return [
            java,
            *JVM_FLAGS,
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            f"{self.libs_dir}/*",
            main_class,
            *args,
        ]

    def _format(self, java: str) -> None:
        # A half-formatted dir (no meta.properties) would make StorageTool refuse; start clean.
        shutil.rmtree(self.log_dir, ignore_errors=True)
        cmd = self._java_cmd(
            java,
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            _cluster_id(),
            "-c",
            str(self.data_dir / "server.properties"),
        )
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        with open(self.log_path, "a") as log:
            log.write(result.stdout)
        if result.returncode != 0:
            raise RuntimeError(f"kafka storage format failed ({result.returncode}):\n{result.stdout[-4000:]}")

    def _spawn(self, java: str) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = self._java_cmd(java, "kafka.Kafka", str(self.data_dir / "server.properties"))
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
            )
        atexit.register(self.kill)

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None and self.port is not None
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"kafka exited with code {self._proc.returncode} during start; "
                    f"log tail:\n{log_tail(self.log_path)}"
                )
            if port_open("127.0.0.1", self.port) and metadata_ready("127.0.0.1", self.port):
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"kafka not ready on {self.bootstrap} before the timeout; "
                    f"log tail:\n{log_tail(self.log_path)}"
                )
            time.sleep(0.1)

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                return fh.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def _reap(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        atexit.unregister(self.kill)
        self._proc = None

"""Run real Apache Kafka from Maven Central jars (KRaft, combined broker+controller nodes): one
node (``KafkaBroker``) or a cluster of N (``KafkaCluster``: one cluster id, a static N-voter
quorum, replication factor min(3, N) and ``min.insync.replicas`` 2 from three nodes on).

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
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
    return metadata_brokers(host, port, timeout=timeout) >= 1


def metadata_brokers(host: str, port: int, *, timeout: float = 2.0) -> int:
    """How many live brokers a Metadata v0 answer lists (0 if there is no answer)."""
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
        return 0
    if len(body) < 8:
        return 0
    correlation_id, broker_count = struct.unpack(">ii", body[:8])
    return int(broker_count) if correlation_id == 1 else 0


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed")
        chunks += chunk
    return bytes(chunks)


def replication_settings(brokers: int) -> dict[str, str]:
    """Broker defaults for a cluster of ``brokers`` nodes: replication factor min(3, N) for new
    and internal topics, and ``min.insync.replicas`` 2 once there are three copies, so an
    ``acks=all`` write survives the loss of any one broker and is refused rather than kept on a
    single copy."""
    factor = min(3, brokers)
    isr = 2 if factor >= 3 else 1
    return {
        "default.replication.factor": str(factor),
        "min.insync.replicas": str(isr),
        "offsets.topic.replication.factor": str(factor),
        "transaction.state.log.replication.factor": str(factor),
        "transaction.state.log.min.isr": str(isr),
        "share.coordinator.state.topic.replication.factor": str(factor),
        "share.coordinator.state.topic.min.isr": str(isr),
    }


class PortInUse(RuntimeError):
    """A node of a cluster could not bind one of its (fixed) ports; the cluster picks new ones."""


@dataclass(frozen=True)
class Quorum:
    """What every node of a multi-node cluster shares: the cluster id and the static voters
    (``controller.quorum.voters``, node id -> controller port, all on 127.0.0.1)."""

    cluster_id: str
    voters: Mapping[int, int]

    @property
    def voters_setting(self) -> str:
        return ",".join(f"{node}@127.0.0.1:{port}" for node, port in sorted(self.voters.items()))


class KafkaBroker:
    """One Kafka process acting as broker and KRaft controller on 127.0.0.1: alone (a
    one-voter dynamic quorum, replication factor 1), or as node ``node_id`` of a
    ``KafkaCluster`` (``quorum`` given; its ports are then fixed by the cluster).

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
        node_id: int = 1,
        controller_port: int | None = None,
        quorum: Quorum | None = None,
        internal_listener: bool = False,
    ) -> None:
        """``advertised_port``: the port clients are told to use (a fault proxy in front of the
        broker, in the fault-injection suite); defaults to the broker's own port.

        ``internal_listener``: brokers replicate over a listener of their own (``INTERNAL``, on
        ``internal_port``, advertised as itself), so a proxy on the client port stands between
        clients and this broker only, never between brokers. Every node of a cluster must agree
        (``KafkaCluster`` sets it for all when it has ``advertised_ports``)."""
        self.advertised_port = advertised_port
        self.internal_listener = internal_listener
        self.internal_port: int | None = None
        self.libs_dir = Path(libs_dir).resolve()
        self.data_dir = Path(data_dir).resolve()
        self.log_path = Path(log_path).resolve() if log_path else self.data_dir / "kafka.log"
        self.node_id = node_id
        self.quorum = quorum
        self._fixed_port = port is not None
        self.port: int | None = port
        self.controller_port: int | None = controller_port
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
            if self.internal_listener and self.internal_port is None:
                self.internal_port = free_port()
                while self.internal_port in (self.port, self.controller_port):
                    self.internal_port = free_port()
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
                if "Address already in use" in new_text and self.quorum is not None:
                    self.internal_port = None  # the cluster plans the others anew; this one too
                    self._save_ports()
                    raise PortInUse(f"kafka node {self.node_id}: a port is taken") from None
                if "Address already in use" in new_text and attempt < attempts:
                    # Ports are only free "a moment ago"; pick new ones (a fixed broker port stays).
                    if not self._fixed_port:
                        self.port = None
                    self.controller_port = None
                    self.internal_port = None
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
        if self.controller_port is None:
            self.controller_port = int(saved["controller_port"])
        if self.internal_listener and saved.get("internal_port"):
            self.internal_port = int(saved["internal_port"])

    def _save_ports(self) -> None:
        path = self.data_dir / "ports.json"
        ports = {"port": self.port, "controller_port": self.controller_port}
        if self.internal_port is not None:
            ports["internal_port"] = self.internal_port
        path.write_text(json.dumps(ports))

    def _write_config(self) -> None:
        quorum = (
            {"controller.quorum.voters": self.quorum.voters_setting}
            if self.quorum is not None
            else {"controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}"}
        )
        listeners = f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
        advertised = f"PLAINTEXT://127.0.0.1:{self.advertised_port or self.port}"
        if self.internal_listener:
            listeners += f",INTERNAL://127.0.0.1:{self.internal_port}"
            advertised += f",INTERNAL://127.0.0.1:{self.internal_port}"
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            **quorum,
            "listeners": listeners,
            "advertised.listeners": advertised,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "INTERNAL" if self.internal_listener else "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
            + (",INTERNAL:PLAINTEXT" if self.internal_listener else ""),
            "log.dirs": str(self.log_dir),
            "num.partitions": "3",
            "auto.create.topics.enable": "true",
            **replication_settings(len(self.quorum.voters) if self.quorum is not None else 1),
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.num.partitions": "4",
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
        # Static voters need no flag; a lone node is a one-voter dynamic quorum (--standalone).
        quorum = ("-t", self.quorum.cluster_id) if self.quorum else ("--standalone", "-t", _cluster_id())
        cmd = self._java_cmd(
            java, "kafka.tools.StorageTool", "format", *quorum, "-c", str(self.data_dir / "server.properties")
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


class KafkaCluster:
    """N Kafka nodes on 127.0.0.1, each a broker and a voter of one KRaft quorum, each its own
    process, ports, data folder and log. ``size=1`` is exactly one ``KafkaBroker`` in
    ``data_dir`` (what the stack always ran; its data carries over); from two nodes on, node
    ``i`` lives in ``data_dir/node-<i>`` and logs to ``log_dir/kafka-<i>.log``, and the cluster
    id and every port are kept in ``data_dir/cluster.json`` across runs.

    The nodes start in parallel (each quorum needs a majority up before any broker serves), and
    ``start()`` returns once every node lists all N brokers. For fault injection each node is
    reachable by id: ``cluster.node(2).kill()`` (SIGKILL, data kept), ``cluster.node(2).start()``
    (same ports and data, returns once it serves), ``.port``, ``.pid``; ``wait_healthy()``
    blocks until all N are back in every node's metadata.
    """

    def __init__(
        self,
        *,
        libs_dir: Path,
        data_dir: Path,
        size: int = 3,
        log_dir: Path | None = None,
        advertised_ports: Mapping[int, int] | None = None,
    ) -> None:
        """``advertised_ports``: node id -> the port clients are told to use for that node (a
        fault proxy per broker); defaults to each node's own port. With them, the brokers
        replicate over an internal listener of their own (``KafkaBroker(internal_listener=)``):
        a proxy cuts a broker off from its clients, not from the other brokers, and the KRaft
        controllers talk directly on their controller ports in any case."""
        if size < 1:
            raise ValueError(f"a Kafka cluster needs at least one node, not {size}")
        self.libs_dir = Path(libs_dir).resolve()
        self.data_dir = Path(data_dir).resolve()
        self.size = size
        self.log_dir = Path(log_dir).resolve() if log_dir is not None else self.data_dir
        self.advertised_ports = dict(advertised_ports or {})
        settings = replication_settings(size)
        self.replication_factor = int(settings["default.replication.factor"])
        self.min_insync_replicas = int(settings["min.insync.replicas"])
        self.nodes: list[KafkaBroker] = []
        if size == 1:
            self.nodes = [
                KafkaBroker(
                    libs_dir=self.libs_dir,
                    data_dir=self.data_dir,
                    log_path=self.log_dir / "kafka.log",
                    advertised_port=self.advertised_ports.get(1),
                )
            ]
        else:
            self._make_nodes(self._load_or_plan())

    @property
    def bootstrap(self) -> str:
        """Every node's address, comma-separated (a client needs any one of them)."""
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def pids(self) -> list[int]:
        return [node.pid for node in self.nodes if node.pid is not None]

    @property
    def running(self) -> bool:
        return all(node.running for node in self.nodes)

    def node(self, node_id: int) -> KafkaBroker:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(f"no Kafka node {node_id} (nodes: {[n.node_id for n in self.nodes]})")

    def __enter__(self) -> KafkaCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 120) -> None:
        """Start every node that is not running, in parallel; return once all N brokers are in
        every node's metadata. A port taken meanwhile: new ports for every node, up to 3 times."""
        deadline = time.monotonic() + timeout
        for attempt in range(1, 4):
            try:
                self._start_nodes(deadline)
                break
            except PortInUse:
                self.kill()
                if attempt == 3:
                    raise
                self._make_nodes(self._plan(self._load()["cluster_id"]))
        self.wait_healthy(timeout=max(1.0, deadline - time.monotonic()))

    def stop(self, timeout: float = 20) -> None:
        """Controlled shutdown of every node, in parallel (SIGKILL after ``timeout``)."""
        with ThreadPoolExecutor(max_workers=self.size) as pool:
            list(pool.map(lambda node: node.stop(timeout), self.nodes))

    def kill(self) -> None:
        """SIGKILL every node (data kept)."""
        for node in self.nodes:
            node.kill()

    def wait_healthy(self, timeout: float = 60) -> None:
        """Until every node runs and lists all N brokers (e.g. after a node was restarted)."""
        deadline = time.monotonic() + timeout
        while True:
            seen = {node.node_id: metadata_brokers("127.0.0.1", node.port or 0) for node in self.nodes}
            if all(count >= self.size for count in seen.values()) and self.running:
                return
            for node in self.nodes:
                if node._proc is not None and node._proc.poll() is not None:
                    raise RuntimeError(
                        f"kafka node {node.node_id} exited with code {node._proc.returncode}; "
                        f"log tail:\n{log_tail(node.log_path)}"
                    )
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"kafka cluster not whole before the timeout: brokers seen per node {seen}"
                )
            time.sleep(0.1)

    # internals

    def _start_nodes(self, deadline: float) -> None:
        # Each node formats (a JVM of its own) and starts in its own thread: a node serves only
        # once the quorum has a leader, which needs a majority of the nodes up.
        pending = [node for node in self.nodes if not node.running]
        if not pending:
            return
        with ThreadPoolExecutor(max_workers=len(pending), thread_name_prefix="kafka-node") as pool:
            futures = [pool.submit(node.start, max(1.0, deadline - time.monotonic())) for node in pending]
            errors = [f.exception() for f in futures]
        if any(isinstance(e, PortInUse) for e in errors):
            raise PortInUse("a port of the cluster is taken")
        for error in errors:
            if error is not None:
                raise error

    def _cluster_file(self) -> Path:
        return self.data_dir / "cluster.json"

    def _load(self) -> dict[str, object]:
        return dict(json.loads(self._cluster_file().read_text()))

    def _load_or_plan(self) -> dict[str, object]:
        path = self._cluster_file()
        if path.exists():
            saved = self._load()
            nodes = saved.get("nodes")
            if isinstance(nodes, dict) and len(nodes) == self.size:
                return saved
        # A new cluster: storage formatted for another cluster id would refuse to start.
        for node_id in range(1, self.size + 1):
            shutil.rmtree(self.data_dir / f"node-{node_id}", ignore_errors=True)
        return self._plan(_cluster_id())

    def _plan(self, cluster_id: object) -> dict[str, object]:
        ports: set[int] = set()
        while len(ports) < 2 * self.size:
            ports.add(free_port())
        chosen = sorted(ports)
        plan: dict[str, object] = {
            "cluster_id": str(cluster_id),
            "nodes": {
                str(i): {"port": chosen[2 * (i - 1)], "controller_port": chosen[2 * (i - 1) + 1]}
                for i in range(1, self.size + 1)
            },
        }
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._cluster_file().write_text(json.dumps(plan, indent=2) + "\n")
        return plan

    def _make_nodes(self, plan: Mapping[str, object]) -> None:
        nodes = plan["nodes"]
        assert isinstance(nodes, dict)
        ports = {int(i): (int(p["port"]), int(p["controller_port"])) for i, p in nodes.items()}
        quorum = Quorum(
            cluster_id=str(plan["cluster_id"]),
            voters={i: controller for i, (_, controller) in ports.items()},
        )
        self.nodes = [
            KafkaBroker(
                libs_dir=self.libs_dir,
                data_dir=self.data_dir / f"node-{i}",
                port=port,
                controller_port=controller,
                log_path=self.log_dir / f"kafka-{i}.log",
                advertised_port=self.advertised_ports.get(i),
                node_id=i,
                quorum=quorum,
                internal_listener=bool(self.advertised_ports),
            )
            for i, (port, controller) in sorted(ports.items())
        ]

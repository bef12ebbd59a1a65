"""The fault suite on the system as it scales out (issue 10): three Kafka nodes (KRaft, replication
factor 3, ``min.insync.replicas`` 2, the producers' ``acks=all``) and two replicas of every
service, started once for every cluster scenario.

Every broker has a fault proxy of its own in front of its client port and advertises the proxy's
port, so the services reach broker i only through proxy i, and a proxy fault cuts that one broker
off from every client. The brokers replicate over an internal listener of their own and the KRaft
controllers talk on their controller ports, both directly (``KafkaCluster(advertised_ports=)``):
a proxy fault is a partition between the clients and one broker, not inside the cluster. The
harness's own admin client asks the brokers directly too (which broker leads what). PostgreSQL
sits behind its proxy as in the single-node suite; the load, the invariants and the report are
the ``FaultSuite``'s, and every result says brokers=3, replicas=2.

The gateway stays one process (``Stack``: a stateless door a Kubernetes Service would balance);
the scenarios leave it running, and the single-node suite already kills it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import time
from collections import Counter
from pathlib import Path

import httpx
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from harness import FaultSuite, Result, Scenario
from proxy import FaultProxy

from emporium_devstack.kafka import KafkaBroker, KafkaCluster, ensure_kafka_libs
from emporium_devstack.ports import free_port
from emporium_devstack.stack import SERVICES, ServiceProcess
from emporium_devstack.testing import cache_dir
from emporium_events import topics
from emporium_events.failpoints import ENV as FAILPOINTS

BROKERS = 3
REPLICAS = 2
EVENT_TOPICS = list(topics.ALL)
# Kept three times, so they must be whole again before the next scenario kills a broker.
REPLICATED_TOPICS = [*EVENT_TOPICS, *(topics.dlq(t) for t in EVENT_TOPICS), "__consumer_offsets"]
# SIGTERM to exit: what a Kubernetes pod gets by default (terminationGracePeriodSeconds).
GRACE_SECONDS = 30.0
READY_SECONDS = 90.0


class ClusterFaultSuite(FaultSuite):
    """``FaultSuite`` on ``BROKERS`` Kafka nodes, each behind its own proxy, and ``REPLICAS``
    processes of every service."""

    def __init__(self, work_dir: Path, **kwargs: object) -> None:
        super().__init__(work_dir, **kwargs)  # type: ignore[arg-type]
        self.brokers, self.replicas = BROKERS, REPLICAS
        # What a scenario found wrong while it injected (say, events published while only one
        # broker ran), added to the invariants' own findings after the checks.
        self.found: dict[str, list[str]] = {}
        # The harness's own admin clients log every refused connection to a node it killed.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    # ------------------------------------------------------------------ the system under test

    async def start(self) -> None:
        libs = await asyncio.to_thread(ensure_kafka_libs, cache_dir())
        fronts: dict[int, int] = {}
        while len(set(fronts.values())) < BROKERS:
            fronts = {i: free_port() for i in range(1, BROKERS + 1)}
        self.kafka = KafkaCluster(
            libs_dir=libs, data_dir=self.work_dir / "kafka", size=BROKERS, advertised_ports=fronts
        )
        await asyncio.to_thread(self.kafka.start, 180)
        # Node ports are only final once the cluster runs (a port taken meanwhile is replanned).
        self.kafka_proxies = {
            i: FaultProxy(listen_port=fronts[i], target_port=self.node(i).port or 0) for i in fronts
        }
        for kafka_proxy in self.kafka_proxies.values():
            await kafka_proxy.start()
        await self.start_postgres_and_stack(
            kafka_bootstrap=",".join(f"127.0.0.1:{port}" for port in fronts.values()),
            timeout=240,
            replicas=REPLICAS,
        )

    async def stop(self) -> None:
        await super().stop()  # the stack first, then what it used
        for kafka_proxy in getattr(self, "kafka_proxies", {}).values():
            await kafka_proxy.stop()
        if hasattr(self, "kafka"):
            await asyncio.to_thread(self.kafka.stop)

    def node(self, node_id: int) -> KafkaBroker:
        return self.kafka.node(node_id)

    def instances(self) -> list[tuple[str, ServiceProcess]]:
        """(service, replica process) for every replica of every service."""
        return [(name, process) for name in SERVICES for process in self.stack.replicas[name]]

    # ------------------------------------------------------------------ Kafka, asked directly

    async def leaders(self) -> Counter[int]:
        """How many partitions of the event topics each broker leads, asked of the nodes that run
        by a new client (one that knew a killed node keeps asking it)."""
        described = await self._describe(EVENT_TOPICS)
        return Counter(p["leader"] for t in described for p in t["partitions"] if p["leader"] >= 0)

    async def under_replicated(self) -> list[str]:
        """Partitions kept fewer than ``BROKERS`` times in sync (after a broker came back)."""
        described = await self._describe(REPLICATED_TOPICS)
        return [
            f"{t['topic']}/{p['partition']} isr {sorted(p['isr'])}"
            for t in described
            for p in t["partitions"]
            if len(p["isr"]) < BROKERS
        ]

    async def _describe(self, names: list[str], tries: int = 20) -> list[dict]:  # type: ignore[type-arg]
        """Metadata of ``names``. Until a killed node is fenced (4 s), the metadata still lists
        it and a request may be sent to it: such a try fails and is made again."""
        for attempt in range(1, tries + 1):
            live = ",".join(node.bootstrap for node in self.kafka.nodes if node.running)
            client = AIOKafkaAdminClient(bootstrap_servers=live, request_timeout_ms=10_000)
            try:
                await client.start()
                return list(await client.describe_topics(names))
            except KafkaError:
                if attempt == tries:
                    raise
            finally:
                await client.close()
            await asyncio.sleep(0.5)
        raise AssertionError("unreachable")

    async def kill_node(self, node_id: int, result: Result) -> bool:
        """kill -9 one Kafka node (a planned fault); True if it died by it."""
        node = self.node(node_id)
        if not node.running:
            result.harness_errors.append(f"broker {node_id} was not running when it was to be killed")
            return False
        process = node._proc
        await asyncio.to_thread(node.kill)
        code = process.returncode if process is not None else None
        if code != -signal.SIGKILL:
            result.harness_errors.append(f"broker {node_id} ended with {code}, not by SIGKILL")
            return False
        result.injected += 1
        self.note(f"broker {node_id}: kill -9")
        return True

    # ------------------------------------------------------------------ the services' metrics

    async def metrics(self, process: ServiceProcess) -> str | None:
        if not process.running:
            return None
        try:
            return (await self.http.get(f"{process.url}/metrics", timeout=3)).text
        except httpx.HTTPError:
            return None

    async def relay_leads(self, name: str, process: ServiceProcess) -> bool:
        text = await self.metrics(process)
        return (
            text is not None and re.search(rf"^emporium_{name}_outbox_relay_leader 1", text, re.M) is not None
        )

    async def published(self) -> int | None:
        """Events every replica's relay has had acknowledged by Kafka since it started (None if
        one did not answer)."""
        total = 0.0
        for name, process in self.instances():
            text = await self.metrics(process)
            if text is None:
                return None
            total += _sum(text, f"emporium_{name}_events_published_total")
        return int(total)

    async def backlog(self) -> int:
        """Outbox rows not yet published, over every service."""
        unsent = 0
        for name in SERVICES:
            unsent += (await self.q(name, "SELECT count(*) FROM outbox WHERE sent_at IS NULL"))[0][0]
        return unsent

    # Duplicates are counted per replica (the harness keys them by process name here).

    async def _sample_duplicates(self) -> None:
        for name, process in self.instances():
            pid = process.pid if process.running else None
            text = await self.metrics(process) if pid is not None else None
            if pid is None or text is None or process.pid != pid:
                continue
            value = _sum(text, f"emporium_{name}_events_consumed_total", 'outcome="duplicate"')
            watched, base, last = self._duplicates_watch.get(process.name, (pid, 0.0, 0.0))
            if watched != pid:  # a new instance counts from zero
                banked = self._duplicates_banked.get(process.name, 0.0)
                self._duplicates_banked[process.name] = banked + max(0.0, last - base)
                watched, base, last = pid, 0.0, 0.0
            self._duplicates_watch[process.name] = (pid, base, max(last, value))

    async def _start_counting_duplicates(self) -> None:
        self._duplicates_watch, self._duplicates_banked = {}, {}
        for name, process in self.instances():
            text = await self.metrics(process)
            if process.pid is not None and text is not None:
                value = _sum(text, f"emporium_{name}_events_consumed_total", 'outcome="duplicate"')
                self._duplicates_watch[process.name] = (process.pid, value, value)

    # ------------------------------------------------------------------ between scenarios

    async def start_process(self, process: ServiceProcess) -> None:
        await self._sample_duplicates()
        await asyncio.to_thread(process.start)
        await asyncio.to_thread(process.wait_ready, READY_SECONDS)

    async def _restore(self) -> None:
        for kafka_proxy in self.kafka_proxies.values():
            kafka_proxy.heal()
        self.pg_proxy.heal()
        if not self.postgres.running:
            await asyncio.to_thread(self.postgres.start)
        if not self.kafka.running:
            await asyncio.to_thread(self.kafka.start, 120)
            self.note("kafka: every node up again")
        for process in self.stack.processes:
            process.signal(signal.SIGCONT)
            if process.env.pop(FAILPOINTS, None) is not None:
                await asyncio.to_thread(process.terminate)
            if not process.running:
                await self.start_process(process)
                self.note(f"{process.name}: restarted by the restore")
        # A broker back from the dead catches up before the next scenario may kill another.
        deadline = time.monotonic() + 90
        try:
            while lagging := await self.under_replicated():
                if time.monotonic() > deadline:
                    self.note(f"kafka: still under-replicated after 90 s: {lagging[:5]}")
                    break
                await asyncio.sleep(1)
        except KafkaError as exc:  # the next scenario will say what it cannot do
            self.note(f"kafka: partitions' replicas not known ({exc!r})")

    async def _check(self, result: Result, *args: object, **kwargs: object) -> None:
        await super()._check(result, *args, **kwargs)  # type: ignore[arg-type]
        for invariant, problems in self.found.items():
            result.violations[invariant] += problems
        self.found = {}


def _sum(text: str, metric: str, having: str = "") -> float:
    """The sum of a Prometheus counter's samples (those whose labels contain ``having``)."""
    return sum(
        float(m.group(2))
        for m in re.finditer(rf"^{metric}(?:{{([^}}]*)}})? ([0-9.e+]+)$", text, re.M)
        if having in (m.group(1) or "")
    )


def _cluster(suite: FaultSuite) -> ClusterFaultSuite:
    if not isinstance(suite, ClusterFaultSuite):
        raise TypeError("a cluster scenario needs the cluster suite")
    return suite


# ---------------------------------------------------------------------- fault injectors

# How long two of the three brokers stay down together: long enough for every relay to try (and
# fail) to publish several times, since a send gives up after the producer's 15 s request timeout.
BOTH_DOWN_SECONDS = 12.0
# Sends still in flight when the second broker died may be acknowledged just after.
IN_FLIGHT_GRACE = 2.0


async def two_brokers_down(suite: FaultSuite, result: Result) -> None:
    """kill -9 the broker leading the most event partitions; once the others lead them, kill -9
    the busiest of the two left. One broker of three is not enough for ``min.insync.replicas``
    2 (nor for the KRaft quorum): every write must be refused, the outbox must hold every event,
    and none may be published until the brokers are back. Two faults."""
    suite = _cluster(suite)
    result.planned += 2
    first, _ = (await suite.leaders()).most_common(1)[0]
    if not await suite.kill_node(first, result):
        return
    # Leadership moves once the controller fences it (broker.session.timeout.ms 4 s).
    deadline = time.monotonic() + 30
    while first in (counts := await suite.leaders()):
        if time.monotonic() > deadline:
            result.harness_errors.append(f"broker {first} still leads partitions 30 s after its kill")
            return
        await asyncio.sleep(0.5)
    suite.note(f"kafka: broker {first} leads nothing now; leaders {dict(counts)}")
    await asyncio.sleep(suite.random.uniform(1.0, 3.0))  # a little traffic on two brokers
    second, _ = counts.most_common(1)[0]
    if not await suite.kill_node(second, result):
        return
    await asyncio.sleep(IN_FLIGHT_GRACE)
    published, backlog = await suite.published(), await suite.backlog()
    await asyncio.sleep(BOTH_DOWN_SECONDS)
    published_after, backlog_after = await suite.published(), await suite.backlog()
    suite.note(
        f"one broker of three for {BOTH_DOWN_SECONDS:.0f} s: events published {published} -> "
        f"{published_after}, outbox backlog {backlog} -> {backlog_after}"
    )
    if published is None or published_after is None:
        result.harness_errors.append("a replica's /metrics did not answer while two brokers were down")
    elif published_after != published:
        suite.found.setdefault("outbox_dlq", []).append(
            f"{published_after - published} events acknowledged while only one broker of three ran "
            "(acks=all with min.insync.replicas 2 must refuse them)"
        )
    if backlog_after <= backlog:
        result.harness_errors.append(
            f"the outbox backlog did not grow ({backlog} -> {backlog_after}) while two brokers were "
            "down: no write was refused, so the scenario proved nothing"
        )
    started = time.monotonic()
    await asyncio.to_thread(suite.kafka.start, 120)
    suite.note(f"kafka: brokers {first} and {second} back in {time.monotonic() - started:.1f}s")


async def kill_a_replica_of_each(
    suite: FaultSuite, result: Result, low: float = 3.0, high: float = 6.0
) -> None:
    """kill -9 one replica of every service at once (the one whose relay holds its outbox lease,
    so the lease must pass to the other), restart them ``low``..``high`` s later. One fault per
    service; the gateway (one process) keeps running."""
    suite = _cluster(suite)
    result.planned += len(SERVICES)
    victims: list[tuple[str, ServiceProcess, ServiceProcess]] = []
    for name in SERVICES:
        replicas = suite.stack.replicas[name]
        leading = [p for p in replicas if await suite.relay_leads(name, p)]
        victim = leading[0] if leading else suite.random.choice(replicas)
        victims.append((name, victim, next(p for p in replicas if p is not victim)))
    await suite._sample_duplicates()
    for _, victim, _ in victims:
        await asyncio.sleep(suite.random.uniform(0.0, 0.3))
        if not victim.running:
            result.harness_errors.append(f"{victim.name} was not running when it was to be killed")
            continue
        await asyncio.to_thread(victim.kill)
        if victim.returncode == -signal.SIGKILL:
            result.injected += 1
            suite.note(f"{victim.name}: kill -9")
        else:
            result.harness_errors.append(f"{victim.name} ended with {victim.returncode}, not by SIGKILL")
    killed = time.monotonic()
    down = suite.random.uniform(low, high)
    handed: set[str] = set()
    while time.monotonic() - killed < down:  # the survivors take over each outbox lease
        for name, _, survivor in victims:
            if name not in handed and await suite.relay_leads(name, survivor):
                handed.add(name)
                suite.note(f"{survivor.name}: holds the outbox lease ({time.monotonic() - killed:.1f}s)")
        await asyncio.sleep(0.25)
    suite.note(f"outbox lease taken over in {len(handed)} of {len(SERVICES)} services while down")
    await asyncio.gather(*(suite.start_process(victim) for _, victim, _ in victims))
    suite.note("every victim ready again")


def _unclean(process: ServiceProcess) -> int:
    """Lines of ``process``'s recent output that say a shutdown step failed."""
    return sum(
        "did not finish cleanly" in line or line.startswith("Traceback")
        for line in process.tail(200).splitlines()
    )


async def rolling_restart(suite: FaultSuite, result: Result) -> None:
    """Every service, replica by replica, the way a Deployment with maxUnavailable 1 rolls out:
    SIGTERM (``GRACE_SECONDS`` to exit cleanly), start the replacement, wait until it is ready,
    then the next. One fault per replica stopped cleanly: it exited by itself within the grace
    period, with 0 or by the SIGTERM that uvicorn (0.29+) raises again once its graceful
    shutdown is done, and logged no failed shutdown step. Anything else (killed when the grace
    ran out, a shutdown step failing) was no graceful restart: a harness error that says so."""
    suite = _cluster(suite)
    result.planned += sum(len(suite.stack.replicas[name]) for name in SERVICES)
    for _, process in suite.instances():
        await suite._sample_duplicates()
        unclean_before = _unclean(process)
        began = time.monotonic()
        await asyncio.to_thread(process.terminate, GRACE_SECONDS)
        stopped = time.monotonic()
        code, unclean = process.returncode, _unclean(process) - unclean_before
        await suite.start_process(process)
        suite.note(
            f"{process.name}: SIGTERM, exited {code} in {stopped - began:.1f}s, "
            f"replacement ready in {time.monotonic() - stopped:.1f}s"
        )
        if code in (0, -signal.SIGTERM) and unclean <= 0:
            result.injected += 1
        else:
            result.harness_errors.append(
                f"{process.name} did not stop cleanly on SIGTERM (code {code}, "
                f"{max(unclean, 0)} failed shutdown lines):\n{process.tail(10)}"
            )


async def cut_off_broker(suite: FaultSuite, result: Result, seconds: float = 20.0) -> None:
    """Blackhole the proxy in front of the broker leading the most event partitions for
    ``seconds`` (past the producers' 15 s request timeout, so sends fail and are retried, not
    just delayed), then restore. The broker stays in the cluster (its replication and controller
    traffic is direct), so its partitions keep their leader: their clients can only wait. One
    fault, if traffic met it."""
    suite = _cluster(suite)
    result.planned += 1
    counts = await suite.leaders()
    busiest, _ = counts.most_common(1)[0]
    proxy = suite.kafka_proxies[busiest]
    held_before = proxy.faulted
    proxy.blackhole()
    suite.note(f"broker {busiest}: cut off from its clients (partitions led: {dict(counts)})")
    try:
        await asyncio.sleep(seconds)
    finally:
        proxy.heal()
    suite.note(f"broker {busiest}: reachable again")
    if proxy.faulted > held_before:
        result.injected += 1
    else:
        result.harness_errors.append(f"broker {busiest}: no traffic met its proxy's blackhole")


CLUSTER = [
    Scenario("cluster: kill -9 the busiest broker, then a second", two_brokers_down),
    Scenario("cluster: kill -9 one replica of every service", kill_a_replica_of_each),
    Scenario("cluster: rolling restart of every service", rolling_restart),
    Scenario("cluster: one broker cut off 20 s", cut_off_broker),
]

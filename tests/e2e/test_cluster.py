"""The system as it scales out: a three-node Kafka cluster (KRaft, replication factor 3,
``min.insync.replicas`` 2) and two replicas of every service behind the one gateway, all real
processes (``Stack(brokers=3, replicas=2)``), started once for this module.

Not the session's stack (tests/e2e/conftest.py): that one runs on the session's single broker.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from conftest import Api
from prometheus_client.parser import text_string_to_metric_families

from emporium_devstack.stack import SERVICES, Stack
from emporium_devstack.testing import cache_dir, repo_root
from emporium_events import topics

EVENT_TOPICS = [t for topic in topics.ALL for t in (topic, topics.dlq(topic))]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = time.monotonic()
    with Stack(
        root=repo_root(),
        cache_dir=cache_dir(),
        work_dir=tmp_path_factory.mktemp("cluster"),
        free_ports=True,
        fast_postgres=True,
        echo=False,
        log_level="WARNING",
        brokers=3,
        replicas=2,
    ) as stack:
        print(f"3 brokers x 2 replicas up in {time.monotonic() - started:.1f}s: {stack.timings}")
        yield stack
        assert stack.kafka is not None
        print(f"Kafka nodes' resident memory at the end, MiB: {[_rss_mib(p) for p in stack.kafka.pids]}")


def _rss_mib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


@pytest.fixture(scope="module")
async def admin(cluster: Stack) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=cluster.kafka_bootstrap, request_timeout_ms=10_000)
    await client.start()
    yield client
    await client.close()


@pytest.fixture(scope="module")
async def shop(cluster: Stack) -> AsyncIterator[Api]:
    client = httpx.AsyncClient(base_url=cluster.gateway_url, timeout=20)
    r = await client.post(
        "/api/v1/auth/login", json={"email": cluster.admin_email, "password": cluster.admin_password}
    )
    assert r.status_code == 200, r.text
    yield Api(client=client, admin_token=r.json()["access_token"])
    await client.aclose()


def samples(url: str, name: str) -> list[tuple[dict[str, str], float]]:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return [
        (s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


async def leaders(admin: AIOKafkaAdminClient) -> Counter[int]:
    """How many partitions of the event topics each broker leads."""
    return Counter(
        p["leader"] for t in await admin.describe_topics(list(topics.ALL)) for p in t["partitions"]
    )


async def leaders_now(stack: Stack) -> Counter[int]:
    """``leaders`` asked of the nodes that run, by a new client (one that knew a killed node
    keeps asking it)."""
    assert stack.kafka is not None
    live = ",".join(node.bootstrap for node in stack.kafka.nodes if node.running)
    client = AIOKafkaAdminClient(bootstrap_servers=live, request_timeout_ms=10_000)
    await client.start()
    try:
        return await leaders(client)
    finally:
        await client.close()


async def test_every_event_topic_has_three_copies_and_accepts_a_write_only_on_two(cluster, admin) -> None:
    described = {t["topic"]: t for t in await admin.describe_topics(EVENT_TOPICS)}
    for name in EVENT_TOPICS:
        partitions = described[name]["partitions"]
        assert len(partitions) == 3, name
        assert all(len(p["replicas"]) == 3 for p in partitions), (name, partitions)
    [response] = await admin.describe_configs(
        [
            ConfigResource(ConfigResourceType.TOPIC, name, {"min.insync.replicas": None})
            for name in EVENT_TOPICS
        ]
    )
    found = {
        resource["resource_name"]: {
            c["config_names"]: (c["config_value"], c["config_source"]) for c in resource["config_entries"]
        }
        for resource in response.to_object()["resources"]
    }
    # Set on each topic when the services created it (source 1: a topic's own config), not
    # only inherited from the brokers' default.
    assert found == {name: {"min.insync.replicas": ("2", 1)} for name in EVENT_TOPICS}
    # The group offsets (the consumers' progress) are kept three times too.
    [offsets] = await admin.describe_topics(["__consumer_offsets"])
    assert {len(p["replicas"]) for p in offsets["partitions"]} == {3}
    assert set((await leaders(admin)).keys()) <= {node.node_id for node in cluster.kafka.nodes}


async def test_orders_placed_through_the_gateway_are_confirmed_and_spread_over_both_orders_replicas(
    cluster, shop
) -> None:
    _, token = await shop.customer()
    product = await shop.product(stock=10)
    placed = [(await shop.place(token, product, 1))["id"] for _ in range(2)]

    for order_id in placed:
        assert (await shop.settled(token, order_id))["status"] == "CONFIRMED"
    for replica in cluster.replicas["orders"]:
        posts = [
            value
            for labels, value in samples(replica.url, "http_server_request_duration_seconds_count")
            if labels.get("http_request_method") == "POST" and labels.get("http_route") == "/orders"
        ]
        assert sum(posts) >= 1, f"{replica.name} took no POST /orders: the gateway did not spread them"


async def test_every_replica_of_every_service_holds_partitions_of_its_consumer_group(cluster, admin) -> None:
    """Each group has both replicas as members, each holding some partitions, together every
    partition of the topics they subscribe to, no partition twice; and each replica's
    ``consumer_assigned_partitions`` gauge says what Kafka assigned it. (Polled for a while: a
    group may still be settling a rebalance.)"""
    deadline = time.monotonic() + 30
    while True:
        try:
            await _check_every_replica_consumes(cluster, admin)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)


async def _check_every_replica_consumes(cluster: Stack, admin: AIOKafkaAdminClient) -> None:
    gauges: dict[str, list[float]] = {}
    for name in SERVICES:
        for replica in cluster.replicas[name]:
            for labels, value in samples(replica.url, f"emporium_{name}_consumer_assigned_partitions"):
                gauges.setdefault(labels["group"], []).append(value)
    assert {"inventory", "payments", "orders", "notifications"} <= set(gauges), gauges

    for group, values in gauges.items():
        assert len(values) == 2 and all(v > 0 for v in values), (group, values)
        members = await _members(admin, group)
        assert len(members) == 2, (group, members)
        held = [tp for assignment in members for tp in assignment]
        assert len(held) == len(set(held)), f"{group}: a partition assigned twice: {members}"
        subscribed = {topic for topic, _ in held}
        assert len(held) == 3 * len(subscribed), f"{group}: some partition has no owner: {members}"
        assert sorted(values) == sorted(float(len(a)) for a in members), (group, values, members)


async def _members(admin: AIOKafkaAdminClient, group: str) -> list[set[tuple[str, int]]]:
    """What Kafka assigned each member of ``group``."""
    [response] = await admin.describe_consumer_groups([group])
    [described] = response.to_object()["groups"]
    assert described["state"] == "Stable", described
    found = []
    for member in described["members"]:
        assignment = ConsumerProtocolMemberAssignment.decode(member["member_assignment"])
        found.append({(topic, p) for topic, partitions in assignment.assignment for p in partitions})
    return found


async def test_orders_still_complete_after_the_broker_leading_most_partitions_is_killed(
    cluster, admin, shop
) -> None:
    _, token = await shop.customer()
    product = await shop.product(stock=10)
    busiest, _ = (await leaders(admin)).most_common(1)[0]
    node = cluster.kafka.node(busiest)

    node.kill()  # SIGKILL: no controlled shutdown, leadership moves when its session expires
    killed_at = time.monotonic()
    order_id = (await shop.place(token, product, 1))["id"]
    assert (await shop.settled(token, order_id, timeout=45))["status"] == "CONFIRMED"
    print(f"order confirmed {time.monotonic() - killed_at:.1f}s after kill -9 of broker {busiest}")
    assert busiest not in await leaders_now(cluster), "the killed broker still leads partitions"

    await asyncio.to_thread(node.start)
    await asyncio.to_thread(cluster.kafka.wait_healthy, 60)
    order_id = (await shop.place(token, product, 1))["id"]
    assert (await shop.settled(token, order_id, timeout=45))["status"] == "CONFIRMED"

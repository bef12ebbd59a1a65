"""How a stack of several replicas and brokers is laid out, before anything starts: ports, the
environment each process gets, the Prometheus jobs, the brokers' replication settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from emporium_devstack.kafka import KafkaCluster, replication_settings
from emporium_devstack.prometheus import Monitoring
from emporium_devstack.stack import GATEWAY, SERVICES, Stack
from emporium_devstack.testing import repo_root


def a_stack(tmp_path: Path, **options: object) -> Stack:
    """External Kafka and databases: the environment can be built without starting anything."""
    return Stack(
        root=repo_root(),
        cache_dir=tmp_path,
        work_dir=tmp_path,
        kafka_bootstrap="127.0.0.1:9092",
        database_urls={name: f"postgresql+psycopg://{name}@db/{name}" for name in (*SERVICES, GATEWAY)},
        **options,
    )


def test_a_second_replica_listens_ten_ports_above_the_first_and_the_gateway_knows_both(tmp_path):
    stack = a_stack(tmp_path, replicas=2)

    assert stack.replica_ports["orders"] == [8003, 8013]
    assert stack.service_url("orders") == "http://127.0.0.1:8003"
    gateway = stack._env_for(GATEWAY)
    assert gateway["GATEWAY_ORDERS_URL"] == "http://127.0.0.1:8003,http://127.0.0.1:8013"
    assert gateway["GATEWAY_PORT"] == "8000"
    second = stack._env_for("orders", 2)
    assert second["ORDERS_PORT"] == "8013"
    assert second["ORDERS_CATALOG_URL"] == "http://127.0.0.1:8001,http://127.0.0.1:8011"
    assert "service.instance.id=orders-2" in second["OTEL_RESOURCE_ATTRIBUTES"]
    assert stack._process_name("orders", 2) == "orders-2" and stack._process_name(GATEWAY, 1) == GATEWAY


def test_one_replica_keeps_the_names_ports_and_single_urls_of_before(tmp_path):
    stack = a_stack(tmp_path)

    assert stack.replica_ports["orders"] == [8003]
    assert stack._env_for(GATEWAY)["GATEWAY_ORDERS_URL"] == "http://127.0.0.1:8003"
    assert stack._process_name("orders", 1) == "orders"
    assert "service.instance.id" not in stack._env_for("orders").get("OTEL_RESOURCE_ATTRIBUTES", "")


def test_free_ports_give_every_replica_a_port_of_its_own(tmp_path):
    stack = a_stack(tmp_path, replicas=3, free_ports=True)

    ports = [port for name in SERVICES for port in stack.replica_ports[name]] + [stack.ports[GATEWAY]]
    assert len(ports) == len(set(ports)) == 16


@pytest.mark.parametrize("replicas", [0, 4])
def test_more_replicas_than_partitions_or_none_are_refused(tmp_path, replicas):
    with pytest.raises(ValueError, match="replicas"):
        a_stack(tmp_path, replicas=replicas)


def test_a_cluster_of_three_keeps_three_copies_and_needs_two_in_sync_and_one_broker_one():
    assert replication_settings(3)["default.replication.factor"] == "3"
    assert replication_settings(3)["min.insync.replicas"] == "2"
    assert replication_settings(3)["offsets.topic.replication.factor"] == "3"
    assert replication_settings(3)["transaction.state.log.min.isr"] == "2"
    assert set(replication_settings(1).values()) == {"1"}


def test_a_cluster_plans_its_nodes_ports_once_and_keeps_them(tmp_path):
    first = KafkaCluster(libs_dir=tmp_path, data_dir=tmp_path / "kafka", size=3)
    again = KafkaCluster(libs_dir=tmp_path, data_dir=tmp_path / "kafka", size=3)

    assert [n.node_id for n in first.nodes] == [1, 2, 3]
    assert first.bootstrap == again.bootstrap and first.bootstrap.count(",") == 2
    assert first.nodes[0].quorum == again.nodes[0].quorum
    assert first.nodes[0].quorum is not None and len(first.nodes[0].quorum.voters) == 3
    assert (first.replication_factor, first.min_insync_replicas) == (3, 2)


def _properties(node) -> dict[str, str]:
    node.internal_port = node.internal_port or 39_999
    node.data_dir.mkdir(parents=True, exist_ok=True)
    node._write_config()
    text = (node.data_dir / "server.properties").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_brokers_behind_proxies_replicate_over_a_listener_the_proxies_do_not_stand_in_front_of(tmp_path):
    fronts = {1: 41_001, 2: 41_002, 3: 41_003}
    cluster = KafkaCluster(libs_dir=tmp_path, data_dir=tmp_path / "kafka", size=3, advertised_ports=fronts)

    for node in cluster.nodes:
        props = _properties(node)
        assert props["inter.broker.listener.name"] == "INTERNAL"
        internal = f"INTERNAL://127.0.0.1:{node.internal_port}"
        assert internal in props["listeners"].split(",")
        assert props["advertised.listeners"].split(",") == [
            f"PLAINTEXT://127.0.0.1:{fronts[node.node_id]}",
            internal,
        ]
    plain = KafkaCluster(libs_dir=tmp_path, data_dir=tmp_path / "plain", size=3)
    props = _properties(plain.nodes[0])
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:{plain.nodes[0].port}"


def test_prometheus_scrapes_every_replica_of_a_service_as_one_job(tmp_path):
    monitoring = Monitoring(
        root=repo_root(),
        work_dir=tmp_path,
        targets={"orders": ["127.0.0.1:8003", "127.0.0.1:8013"], "gateway": "127.0.0.1:8000"},
        free_ports=True,
    )

    jobs = {c["job_name"]: c["static_configs"] for c in monitoring.config()["scrape_configs"]}
    assert jobs == {
        "orders": [{"targets": ["127.0.0.1:8003", "127.0.0.1:8013"]}],
        "gateway": [{"targets": ["127.0.0.1:8000"]}],
    }

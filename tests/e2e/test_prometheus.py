"""The stack's real Prometheus and Alertmanager: every service and the gateway scraped and up,
every rule group of deploy/observability loaded, alerts sent to the Alertmanager, and every
metric the rules read exposed by a running process."""

from __future__ import annotations

import time

import httpx
import yaml  # PyYAML, with uvicorn[standard]
from observability_code import RULE_FILES, exposed, recorded, rules, unknown_names


def _rule_groups() -> set[str]:
    return {group["name"] for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]}


def _until(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.25)


def test_prometheus_scrapes_every_service_and_the_gateway_and_all_are_up(stack):
    monitoring = stack.monitoring
    assert monitoring is not None

    def targets() -> dict[str, str]:
        active = httpx.get(f"{monitoring.prometheus_url}/api/v1/targets", timeout=5).json()["data"]
        return {t["labels"]["job"]: t["health"] for t in active["activeTargets"]}

    assert _until(lambda: set(targets().values()) == {"up"}), targets()
    assert set(targets()) == set(stack.names)


def test_prometheus_has_every_rule_group_loaded_and_alerts_to_the_alertmanager(stack):
    monitoring = stack.monitoring
    api = f"{monitoring.prometheus_url}/api/v1"
    groups = httpx.get(f"{api}/rules", timeout=5).json()["data"]["groups"]
    assert {g["name"] for g in groups} == _rule_groups()
    assert all(rule["health"] != "err" for g in groups for rule in g["rules"]), groups

    def alertmanagers() -> list[str]:
        data = httpx.get(f"{api}/alertmanagers", timeout=5).json()["data"]
        return [a["url"] for a in data["activeAlertmanagers"]]

    assert _until(lambda: alertmanagers()), "Prometheus found no Alertmanager"
    assert str(monitoring.alertmanager_port) in alertmanagers()[0]
    status = httpx.get(f"{monitoring.alertmanager_url}/api/v2/status", timeout=5).json()
    assert "TargetDown" in status["config"]["original"], "the project's alertmanager.yml is loaded"


def test_every_metric_the_rules_read_is_one_a_running_process_exposes(stack):
    known = {"up"} | recorded()  # up: Prometheus's own, per target
    for name in stack.names:
        url = stack.gateway_url if name == "gateway" else stack.service_url(name)
        known |= exposed(httpx.get(f"{url}/metrics", timeout=5).text)
    for rule in rules():
        what = rule.get("alert") or rule.get("record")
        unknown = unknown_names(rule["expr"], known)
        assert not unknown, f"{what} reads {unknown}, which no process exposes: {rule['expr']!r}"

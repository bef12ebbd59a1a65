"""The stack's real Prometheus and Alertmanager: every service and the gateway scraped and up,
every rule group of deploy/observability loaded, alerts sent to the Alertmanager, and every
metric the rules read exposed by a running process."""

from __future__ import annotations

import re
import time

import httpx

from emporium_devstack.testing import repo_root


def _rule_groups() -> set[str]:
    import yaml  # PyYAML, with uvicorn[standard]

    paths = (repo_root() / "deploy/observability/prometheus/rules").glob("*.yml")
    return {group["name"] for path in paths for group in yaml.safe_load(path.read_text())["groups"]}


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


_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = {"and", "or", "unless", "bool", "offset"}


def _names_read(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, ``__name__`` regexes) an expression selects. Enough PromQL for our rules:
    strings, label matchers, groupings and ranges are dropped, then any identifier not called
    as a function is a metric name."""
    regexes = set(re.findall(r'__name__\s*=~\s*"((?:[^"\\]|\\.)*)"', expr))
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", _GROUPING.sub(" ", bare))
    names = {
        name
        for name, call in re.findall(r"\b([a-zA-Z_][a-zA-Z0-9_:]*)(\s*\()?", bare)
        if not call and name not in _KEYWORDS
    }
    return names, {r.encode().decode("unicode_escape") for r in regexes}


def _exposed(text: str) -> set[str]:
    """Every series name a /metrics page can produce, with or without samples yet."""
    names = set()
    for kind, name, rest in re.findall(r"^# (HELP|TYPE) (\S+) ?(.*)$", text, re.MULTILINE):
        names.add(name)
        if kind == "TYPE" and rest == "histogram":
            names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    names |= set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.MULTILINE))
    return names


def test_every_metric_the_rules_read_is_one_a_running_process_exposes(stack):
    exposed = {"up"}  # Prometheus's own, per target
    for name in stack.names:
        url = stack.gateway_url if name == "gateway" else stack.service_url(name)
        exposed |= _exposed(httpx.get(f"{url}/metrics", timeout=5).text)
    import yaml

    rules = [
        rule
        for path in (repo_root() / "deploy/observability/prometheus/rules").glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]
    recorded = {rule["record"] for rule in rules if "record" in rule}
    for rule in rules:
        names, regexes = _names_read(rule["expr"])
        what = rule.get("alert") or rule.get("record")
        assert names or regexes, f"{what}: no metric found in {rule['expr']!r}"
        unknown = {n for n in names if n not in exposed and n not in recorded}
        assert not unknown, f"{what} reads {sorted(unknown)}, which no process exposes"
        for regex in regexes:
            assert any(re.fullmatch(regex, n) for n in exposed), f"{what}: nothing matches {regex!r}"

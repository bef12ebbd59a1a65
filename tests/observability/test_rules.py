"""Alerts as code: the Prometheus rules and the Alertmanager configuration in
deploy/observability pass their own tools' checks, and every alert is tested firing and not.

The tools are Debian's ``prometheus`` (promtool) and ``prometheus-alertmanager`` (amtool), which
``make bootstrap`` installs; a test fails with the tool's own output.
"""

from __future__ import annotations

import pytest
import yaml  # PyYAML, with uvicorn[standard]
from observability_code import OBSERVABILITY, RULE_FILES, run

from emporium_devstack.testing import repo_root

RULES = RULE_FILES
RULE_TESTS = sorted((OBSERVABILITY / "prometheus" / "tests").glob("*.yml"))
ALERTMANAGER = OBSERVABILITY / "alertmanager" / "alertmanager.yml"


def alerts() -> dict[str, dict]:
    found = {}
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            found |= {rule["alert"]: rule for rule in group["rules"] if "alert" in rule}
    return found


def test_the_rules_pass_promtool_check_rules():
    assert RULES, "no rule files"
    run("promtool", "check", "rules", *RULES)


def test_the_rule_unit_tests_pass_promtool_test_rules():
    assert RULE_TESTS, "no rule tests"
    run("promtool", "test", "rules", *RULE_TESTS)


def test_every_alert_has_a_severity_a_one_line_runbook_and_a_test_firing_and_one_quiet():
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    for name, rule in alerts().items():
        assert rule["labels"].get("severity") in {"page", "ticket"}, name
        runbook = rule["annotations"].get("runbook", "")
        assert runbook and "\n" not in runbook.strip(), f"{name}: the runbook is one line"
        assert name in fired, f"{name}: no test shows it firing"
        assert name in quiet, f"{name}: no test shows it staying quiet"


def test_the_alertmanager_config_passes_amtool_check_config():
    run("amtool", "check-config", ALERTMANAGER)


@pytest.mark.parametrize(("labels", "receiver"), [("severity=page", "pager"), ("severity=ticket", "tickets")])
def test_alerts_are_routed_by_severity(labels: str, receiver: str):
    run(
        "amtool",
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER}",
        f"--verify.receivers={receiver}",
        "alertname=Any",
        labels,
    )


def test_a_target_down_inhibits_the_symptoms_of_its_own_job_only():
    [rule] = yaml.safe_load(ALERTMANAGER.read_text())["inhibit_rules"]
    assert rule["source_matchers"] == ['alertname="TargetDown"']
    assert rule["target_matchers"] == ['alertname!="TargetDown"']
    assert rule["equal"] == ["job"]
    assert "TargetDown" in alerts(), "the inhibiting alert exists"


def test_the_readme_tells_what_every_alert_means_in_its_runbook_words():
    readme = (repo_root() / "README.md").read_text()
    for name, rule in alerts().items():
        row = f"| `{name}` | {rule['labels']['severity']} | {rule['annotations']['runbook']} |"
        assert row in readme, f"README.md lacks (or has an old) row for {name}:\n{row}"

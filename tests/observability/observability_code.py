"""The code in deploy/observability, read for the tests: the Prometheus rules, the Grafana
dashboards and the PromQL inside them, and the metric names an expression selects or a /metrics
page exposes. Used by tests/observability (offline) and tests/e2e (against the live stack)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml  # PyYAML, with uvicorn[standard]

from emporium_devstack.testing import repo_root

OBSERVABILITY = repo_root() / "deploy" / "observability"
RULE_FILES = sorted((OBSERVABILITY / "prometheus" / "rules").glob("*.yml"))
GRAFANA = OBSERVABILITY / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
PROVISIONING = GRAFANA / "provisioning"


def run(tool: str, *args: str | Path) -> str:
    """Runs promtool or amtool; fails the test with the tool's own output."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: `make bootstrap` installs it (Debian's prometheus packages)")
    result = subprocess.run([path, *map(str, args)], capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{tool} {' '.join(map(str, args))} failed:\n{output}"
    return output


# --- Prometheus rules -------------------------------------------------------------------------


def rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def recorded() -> set[str]:
    """The series names the recording rules make."""
    return {rule["record"] for rule in rules() if "record" in rule}


# --- Grafana dashboards -----------------------------------------------------------------------

# Grafana's own variables, with values a dashboard of the last hour at a 5 s scrape would get.
BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}
# $name, ${name}, ${name:format}, [[name]] (the old form).
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::[\w-]+)?\}|\[\[(\w+)(?::[\w-]+)?\]\]")
_LABEL_VALUES = re.compile(
    r"^\s*label_values\((?P<selector>.*),\s*(?P<label>[a-zA-Z_]\w*)\s*\)\s*$", re.DOTALL
)


@dataclass(frozen=True)
class Query:
    """One PromQL expression of a dashboard: a panel target, or a variable's label_values()."""

    dashboard: str  # uid
    where: str  # the panel's title and refId, or the variable's name
    expr: str

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.where}: {self.expr}"


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard file, by file name."""
    return {path.name: json.loads(path.read_text()) for path in DASHBOARD_FILES}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, and the panels a collapsed row holds."""
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def targets(board: dict[str, Any]) -> list[Query]:
    return [
        Query(board["uid"], f"{panel.get('title', '?')!r} {target.get('refId', '?')}", target["expr"])
        for panel in panels(board)
        for target in panel.get("targets", [])
    ]


def variables(board: dict[str, Any]) -> list[dict[str, Any]]:
    return list(board.get("templating", {}).get("list", []))


def variable_query(variable: dict[str, Any]) -> tuple[str, str] | None:
    """(selector, label) of a query variable's ``label_values(selector, label)``, else None."""
    query = variable.get("query")
    text = query.get("query", "") if isinstance(query, dict) else str(query or "")
    match = _LABEL_VALUES.match(text)
    return (match["selector"], match["label"]) if match else None


def variables_used(expr: str) -> set[str]:
    return {a or b or c for a, b, c in _VARIABLE.findall(expr)}


def substitute(expr: str, values: dict[str, str]) -> str:
    """``expr`` with every variable replaced by its value (a KeyError names a missing one)."""

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        return values[name] if name in values else BUILTINS[name]

    return _VARIABLE.sub(value, expr)


def regex_escape(value: str) -> str:
    """A value as Grafana writes it into a Prometheus regex matcher for a multi-value or "All"
    variable (its prometheusSpecialRegexEscape): special characters behind a backslash that the
    PromQL string itself escapes."""
    return re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m.group(), value.replace("\\", "\\\\\\\\"))


def variable_value(variable: dict[str, Any], choices: list[str]) -> str:
    """What Grafana puts for ``variable`` when ``choices`` are its options and it shows its
    default: the "All" value (allValue, else every choice as a regex), else its current value
    when that is one of the choices, else the first choice."""
    current = variable.get("current", {}).get("value")
    current = current[0] if isinstance(current, list) and current else current
    if current == "$__all" and variable.get("includeAll"):
        if variable.get("allValue"):
            return str(variable["allValue"])
        return "(" + "|".join(regex_escape(c) for c in choices) + ")"
    pick = current if current in choices else choices[0]
    return regex_escape(pick) if variable.get("multi") or variable.get("includeAll") else pick


def resolve_variables(board: dict[str, Any], choices_of: Callable[[str, str], list[str]]) -> dict[str, str]:
    """A value for every variable of ``board``, in order (a variable's query may use the ones
    before it). ``choices_of(selector, label)`` lists a label_values() variable's options."""
    values: dict[str, str] = {}
    for variable in variables(board):
        name = variable["name"]
        if variable.get("type") == "datasource":
            values[name] = "prometheus"
        elif (query := variable_query(variable)) is not None:
            selector, label = query
            choices = choices_of(substitute(selector, values), label)
            assert choices, f"{board['uid']}: variable {name} has no values ({selector}, {label})"
            values[name] = variable_value(variable, choices)
        else:
            options = [o["value"] for o in variable.get("options", [])] or [variable.get("query", "")]
            values[name] = variable_value(variable, [str(o) for o in options])
    return values


def queries(board: dict[str, Any], values: dict[str, str]) -> list[Query]:
    """Every PromQL expression of ``board`` (panel targets and variable selectors), its variables
    replaced by ``values`` and Grafana's built-ins."""
    found = [Query(q.dashboard, q.where, substitute(q.expr, values)) for q in targets(board)]
    for variable in variables(board):
        if (query := variable_query(variable)) is not None:
            found.append(Query(board["uid"], f"variable {variable['name']}", substitute(query[0], values)))
    return found


# --- Metric names -----------------------------------------------------------------------------

_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# group_left and group_right may come without a label list.
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right"}


def names_read(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, ``__name__`` regexes) an expression selects. Enough PromQL for our rules
    and dashboards: strings, label matchers, groupings and ranges are dropped, then any
    identifier not called as a function is a metric name."""
    regexes = set(re.findall(r'__name__\s*=~\s*"((?:[^"\\]|\\.)*)"', expr))
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", _GROUPING.sub(" ", bare))
    names = {
        name
        for name, call in re.findall(r"\b([a-zA-Z_][a-zA-Z0-9_:]*)(\s*\()?", bare)
        if not call and name not in _KEYWORDS
    }
    return names, {r.encode().decode("unicode_escape") for r in regexes}


def exposed(text: str) -> set[str]:
    """Every series name a /metrics page can produce, with or without samples yet."""
    names = set()
    for kind, name, rest in re.findall(r"^# (HELP|TYPE) (\S+) ?(.*)$", text, re.MULTILINE):
        names.add(name)
        if kind == "TYPE" and rest == "histogram":
            names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    names |= set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.MULTILINE))
    return names


def unknown_names(expr: str, known: set[str]) -> list[str]:
    """What ``expr`` reads that is not in ``known``: names, and ``__name__`` regexes nothing in
    ``known`` matches; or a note that it reads no metric at all."""
    names, regexes = names_read(expr)
    if not names and not regexes:
        return ["(no metric)"]
    missing = sorted(n for n in names if n not in known)
    missing += sorted(f"__name__=~{r!r}" for r in regexes if not any(re.fullmatch(r, n) for n in known))
    return missing

"""Before/after table of two `make bench` runs (their results.json files), in markdown.

    uv run python bench/compare.py BEFORE/results.json AFTER/results.json [--out compare.md]

Both runs come from the same harness; on a shared 2-core machine a single run's figures move by
tens of percent, so read small differences as noise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Getter = Callable[[dict[str, Any]], Any]
# CPU rows that are not the system under test (the Python generator's name, then vegeta's and the harness's).
NOT_THE_SYSTEM = ("load generator", "load generator (vegeta)", "bench harness (python)")


def _get(*path: str) -> Getter:
    def get(results: dict[str, Any]) -> Any:
        value: Any = results
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value

    return get


def _ratio(numerator: str, denominator: str) -> Getter:
    def get(results: dict[str, Any]) -> Any:
        top = _get("references", numerator, "requests_per_second")(results)
        bottom = _get("references", denominator, "requests_per_second")(results)
        return round(top / bottom, 2) if top and bottom else None

    return get


def _cpu_total(step: str) -> Getter:
    def get(results: dict[str, Any]) -> Any:
        cpu = _get(step, "cpu_ms_per_order")(results)
        return round(sum(v for k, v in cpu.items() if k not in NOT_THE_SYSTEM), 1) if cpu else None

    return get


ROWS: list[tuple[str, Getter]] = [
    ("max sustainable orders/s", _get("max_sustainable_orders_per_second")),
    ("70 %: offered orders/s", _get("at_70", "offered_rate")),
    ("70 %: POST /orders p50 ms", _get("at_70", "post_ms", "p50")),
    ("70 %: POST /orders p95 ms", _get("at_70", "post_ms", "p95")),
    ("70 %: POST /orders p99 ms", _get("at_70", "post_ms", "p99")),
    ("70 %: POST → terminal p50 ms", _get("at_70", "completion_ms", "p50")),
    ("70 %: POST → terminal p99 ms", _get("at_70", "completion_ms", "p99")),
    ("70 %: POST → terminal p99.9 ms", _get("at_70", "completion_ms", "p99_9")),
    ("70 %: relay lag p99 ms", _get("at_70", "outbox_relay_lag_ms", "p99")),
    ("70 %: CPU ms per order, all processes", _cpu_total("at_70")),
    *[
        (f"70 %: CPU ms per order, {name}", _get("at_70", "cpu_ms_per_order", name))
        for name in (
            "orders",
            "payments",
            "inventory",
            "notifications",
            "catalog",
            "gateway",
            "kafka",
            "postgresql",
        )
    ],
    (
        "median of 3: max sustainable orders/s",
        _get("headline", "max_sustainable_orders_per_second", "median"),
    ),
    ("median of 3: CPU ms per order at 70 %", _get("headline", "cpu_ms_per_order_system_at_70", "median")),
    ("median of 3: POST p99 ms at 70 %", _get("headline", "post_p99_ms_at_70", "median")),
    ("median of 3: POST → terminal p99 ms at 70 %", _get("headline", "completion_p99_ms_at_70", "median")),
    ("70 %: CPU ms per order, smtp sink", _get("at_70", "cpu_ms_per_order", "smtp sink")),
    (
        "70 %: CPU ms per order, load generator (vegeta)",
        _get("at_70", "cpu_ms_per_order", "load generator (vegeta)"),
    ),
    ("browse: reads p99 ms", _get("browse", "read_ms", "p99")),
    (
        "pass-through: gateway × direct (vegeta, closed loop)",
        _get("gateway_references", "pass_through", "ratio", "gateway", "throughput"),
    ),
    (
        "product list: gateway × catalog + inventory",
        _get("gateway_references", "product_list", "ratio", "gateway", "throughput"),
    ),
    ("peer: ceiling orders/s (asyncio + psycopg)", _get("peers", "ceiling", "best", "orders_per_second")),
    ("peer: DBOS workflow orders/s", _get("peers", "dbos", "best", "orders_per_second")),
    ("catalog read direct req/s", _get("references", "catalog_read_direct", "requests_per_second")),
    ("catalog read via gateway req/s", _get("references", "catalog_read_gateway", "requests_per_second")),
    ("gateway × direct", _ratio("catalog_read_gateway", "catalog_read_direct")),
    ("nginx × direct", _ratio("catalog_read_nginx", "catalog_read_direct")),
    ("PostgreSQL order+outbox tx/s", _get("references", "postgres_order_plus_outbox", "tps")),
    ("Kafka hop, ours p99 ms", _get("references", "kafka_our_hop", "p99_ms")),
    ("Kafka hop, Kafka's tool p99 ms", _get("references", "kafka_tool_end_to_end", "p99_ms")),
]


def _step_cpu(step: dict[str, Any]) -> float:
    return round(sum(v for k, v in step["cpu_ms_per_order"].items() if k not in NOT_THE_SYSTEM), 1)


def _steps(results: dict[str, Any]) -> dict[float, dict[str, Any]]:
    steps = list(results.get("search", [])) + [results[k] for k in ("at_50", "at_70") if k in results]
    return {step["offered_rate"]: step for step in steps}


def same_rate_rows(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The checkout steps both runs made at the same offered rate (the search's first steps)."""
    rows = []
    b, a = _steps(before), _steps(after)
    for rate in sorted(set(b) & set(a)):
        measures: list[tuple[str, Getter]] = [
            ("POST p99 ms", _get("post_ms", "p99")),
            ("POST → terminal p50 ms", _get("completion_ms", "p50")),
            ("POST → terminal p99 ms", _get("completion_ms", "p99")),
            ("CPU ms per order, all processes", _step_cpu),
        ]
        for label, get in measures:
            rows.append(f"| at {rate} orders/s: {label} | {get(b[rate])} | {get(a[rate])} |")
    return rows


def table(before: dict[str, Any], after: dict[str, Any]) -> str:
    lines = [
        f"| measure | before ({before.get('started_at', '?')}) | after ({after.get('started_at', '?')}) |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {name} | {get(before)} | {get(after)} |" for name, get in ROWS]
    lines += same_rate_rows(before, after)
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    text = table(json.loads(args.before.read_text()), json.loads(args.after.read_text()))
    if args.out:
        args.out.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The benchmark's report: a markdown page and PNG plots from ``results.json``."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import loadgen


def timeline(samples: list[loadgen.Sample], completion: dict[str, float]) -> list[dict[str, Any]]:
    """Per second of the run: orders offered and accepted, POST and completion percentiles."""
    if not samples:
        return []
    start = min(s.scheduled for s in samples)
    buckets: dict[int, list[loadgen.Sample]] = defaultdict(list)
    for s in samples:
        buckets[int(s.scheduled - start)].append(s)
    rows = []
    for second in sorted(buckets):
        group = buckets[second]
        done = [completion[s.order_id] for s in group if s.order_id in completion]
        rows.append(
            {
                "second": second,
                "offered": len(group),
                "accepted": sum(1 for s in group if s.status == 202),
                "post_p50_ms": _ms(loadgen.percentile([s.latency for s in group], 50)),
                "completion_p50_ms": _ms(loadgen.percentile(done, 50)),
                "completion_p99_ms": _ms(loadgen.percentile(done, 99)),
            }
        )
    return rows


def _ms(value: float | None) -> float | None:
    return round(value * 1000, 1) if value is not None else None


def plots(results: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    steps = sorted(
        results.get("search", []) + [r for k in ("at_50", "at_70") if (r := results.get(k))],
        key=lambda r: r["offered_rate"],
    )
    if steps:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        rates = [r["offered_rate"] for r in steps]
        for key, label in (("completion_ms", "POST → terminal"), ("post_ms", "POST /orders")):
            for p, style in (("p50", "o-"), ("p99", "s--")):
                ax.plot(rates, [r[key][p] for r in steps], style, label=f"{label} {p}")
        ax.axhline(500, color="grey", lw=0.8, ls=":")  # the completion p99 limit of "sustainable"
        ax.set_yscale("log")
        ax.set_xlabel("offered orders per second (open loop)")
        ax.set_ylabel("latency, ms (log)")
        ax.set_title("Order latency against offered load")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "latency_vs_load.png", dpi=110)
        plt.close(fig)
        made.append("latency_vs_load.png")
    run = next((r for r in results.get("at_70_runs", []) if r.get("timeline")), results.get("at_70"))
    if run and run.get("timeline"):
        rows = run["timeline"]
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
        seconds = [r["second"] for r in rows]
        top.plot(seconds, [r["offered"] for r in rows], label="offered / s")
        top.plot(seconds, [r["accepted"] for r in rows], label="accepted / s")
        top.set_ylabel("orders per second")
        top.legend(fontsize=8)
        top.grid(alpha=0.3)
        for key, label in (
            ("post_p50_ms", "POST p50"),
            ("completion_p50_ms", "completion p50"),
            ("completion_p99_ms", "completion p99"),
        ):
            bottom.plot(seconds, [r[key] for r in rows], label=label)
        bottom.set_ylabel("ms")
        bottom.set_xlabel("second of the run")
        bottom.legend(fontsize=8)
        bottom.grid(alpha=0.3)
        fig.suptitle(f"Throughput and latency over time at 70 % ({run['offered_rate']} orders/s)")
        fig.tight_layout()
        fig.savefig(out / "over_time_70.png", dpi=110)
        plt.close(fig)
        made.append("over_time_70.png")
    return made


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join("—" if c is None else str(c) for c in cells) + " |"


def tracing_rows(tracing: dict[str, Any]) -> list[str]:
    """The tracing-cost table: CPU per order with span export off and on, same rate, fresh stacks."""
    if not (tracing.get("exporter_on") and tracing.get("exporter_off")):
        return [f"Tracing cost not measured: {tracing.get('skipped', 'no run')}.", ""] if tracing else []
    arms = [k for k in ("sdk_disabled", "exporter_off", "exporter_on") if tracing.get(k)]
    cpu = {k: tracing[k]["cpu_ms_per_order"] for k in arms}
    ours = [name for name in cpu["exporter_off"] if name not in ("load generator", "jaeger")]
    total = {k: round(sum(cpu[k].get(n, 0.0) for n in ours), 2) for k in arms}
    titles = {
        "sdk_disabled": "no tracing (OTEL_SDK_DISABLED)",
        "exporter_off": "spans, not exported",
        "exporter_on": "exported (sampling 1.0)",
    }
    lines = [
        f"### What tracing costs (fresh stacks at {tracing['rate']} orders/s, CPU ms per order)",
        "",
        *([f"Arms run {tracing['order']}.", ""] if tracing.get("order") else []),
        _row(["process", *(titles[k] for k in arms)]),
        _row(["---"] * (len(arms) + 1)),
    ]
    lines += [_row([name, *(cpu[k].get(name) for k in arms)]) for name in ours]
    lines += [
        _row(["**total (services, gateway, PostgreSQL, Kafka)**", *(total[k] for k in arms)]),
        _row(["jaeger (the backend itself)", *(cpu[k].get("jaeger", "—") for k in arms)]),
        _row(["completion p50 / p99 ms", *(_p50_p99(tracing[k]["completion_ms"]) for k in arms)]),
        "",
        f"Exporting every span: {_change(total['exporter_off'], total['exporter_on'])} CPU per order "
        "against spans made but not exported (the stack without an OTLP endpoint)"
        + (
            f"; all tracing against none: {_change(total['sdk_disabled'], total['exporter_on'])}."
            if "sdk_disabled" in total
            else "."
        ),
        "",
    ]
    return lines


def _p50_p99(ms: dict[str, Any]) -> str:
    return f"{ms.get('p50')} / {ms.get('p99')}"


def _change(before: float, after: float) -> str:
    return f"{(after / before - 1) * 100:+.1f} %" if before else "n/a"


# The targets beside the figures they judge (benchmark goals, not timed tests).
TARGETS = {
    "max_sustainable_orders_per_second": ">= 400",
    "cpu_ms_per_order_system_at_70": "<= 5",
    "post_p99_ms_at_70": "<= 20",
    "completion_p50_ms_at_70": "<= 25",
    "completion_p99_ms_at_70": "<= 100",
}
HEADLINE_NAMES = {
    "max_sustainable_orders_per_second": "max sustainable orders/s",
    "cpu_ms_per_order_system_at_70": "CPU ms per order at 70 %, the system (all but vegeta and harness)",
    "post_p99_ms_at_70": "POST /orders p99 ms at 70 %",
    "completion_p50_ms_at_70": "POST → terminal p50 ms at 70 %",
    "completion_p99_ms_at_70": "POST → terminal p99 ms at 70 %",
}
NOT_THE_SYSTEM = ("load generator (vegeta)", "bench harness (python)", "load generator")


def _spread_cells(s: dict[str, Any] | None) -> list[Any]:
    s = s or {}
    return [s.get("min"), f"**{s.get('median')}**", s.get("max")]


def headline_rows(results: dict[str, Any]) -> list[str]:
    head = results.get("headline")
    if not head:
        return []
    runs = head["max_sustainable_orders_per_second"].get("runs")
    lines = [
        f"## Headline (median of {runs} runs; min and max beside it)",
        "",
        _row(["figure", "min", "median", "max", "target"]),
        _row(["---"] * 5),
    ]
    lines += [
        _row([title, *_spread_cells(head.get(key)), TARGETS.get(key)])
        for key, title in HEADLINE_NAMES.items()
    ]
    lines += [
        "",
        f"70 % runs sustainable: {head.get('sustainable_at_70')}.",
        "",
        "### CPU ms per order at 70 %, by process",
        "",
        _row(["process", "min", "median", "max"]),
        _row(["---"] * 4),
    ]
    cpu = head.get("cpu_ms_per_order_at_70", {})
    ordered = sorted(cpu.items(), key=lambda kv: -(kv[1].get("median") or 0))
    lines += [_row([name, *_spread_cells(s)]) for name, s in ordered if name not in NOT_THE_SYSTEM]
    lines += [
        _row([f"*{name}* (not the system)", *_spread_cells(s)])
        for name, s in ordered
        if name in NOT_THE_SYSTEM
    ]
    lines.append("")
    return lines


def peer_rows(results: dict[str, Any]) -> list[str]:
    peers = results.get("peers") or {}
    if not peers:
        return []
    head = results.get("headline") or {}
    ours = (head.get("max_sustainable_orders_per_second") or {}).get("median")
    our_cpu = (head.get("cpu_ms_per_order_system_at_70") or {}).get("median")
    lines = [
        "## Peers: the same saga on the same PostgreSQL, same run",
        "",
        "Place the order with its lines → reserve stock under row locks → charge → confirm, each step its "
        "own transaction with a durable commit, closed loop at the concurrency shown (the best of those "
        "tried). *Ceiling*: plain asyncio + psycopg 3 in one process. *DBOS*: the same transactions as "
        "the steps of a DBOS durable workflow. Emporium: the median maximum sustainable rate and the median "
        "system CPU per order at 70 % of it (a peer's CPU is at its maximum: its process and PostgreSQL).",
        "",
        _row(
            [
                "",
                "orders/s",
                "concurrency",
                "CPU ms / order",
                "of it PostgreSQL",
                "p50 ms",
                "p99 ms",
                "Emporium × this (orders/s)",
                "this CPU / Emporium CPU",
            ]
        ),
        _row(["---"] * 9),
        _row(["**Emporium**", ours, "open loop", our_cpu, None, None, None, None, None]),
    ]
    for name, title in (("ceiling", "ceiling (asyncio + psycopg)"), ("dbos", "DBOS workflow")):
        best = (peers.get(name) or {}).get("best")
        if not best:
            errors = [r.get("error", "")[-200:] for r in (peers.get(name) or {}).get("runs", [])]
            lines.append(_row([title, "failed", None, None, None, None, None, None, errors]))
            continue
        cpu = best["cpu_ms_per_order"]
        lines.append(
            _row(
                [
                    title,
                    best["orders_per_second"],
                    best["concurrency"],
                    cpu.get("total"),
                    cpu.get("postgresql"),
                    best["latency_ms"]["p50"],
                    best["latency_ms"]["p99"],
                    round(ours / best["orders_per_second"], 3)
                    if ours and best["orders_per_second"]
                    else None,
                    round(cpu["total"] / our_cpu, 3) if our_cpu and cpu.get("total") else None,
                ]
            )
        )
    lines.append("")
    return lines


def gateway_rows(results: dict[str, Any]) -> list[str]:
    refs = results.get("gateway_references") or {}
    if not refs:
        return []
    if "error" in refs:
        return [f"Gateway references failed: {refs['error']}", ""]
    lines = [
        "## The gateway against the services it fronts (vegeta, same rates, same run)",
        "",
        f"Each arm for {refs.get('seconds')} s at each rate, then closed loop with 32 workers for the "
        "throughput. CPU per request over the processes involved (the gateway, the service(s), "
        "PostgreSQL); the product list's direct side is a page made by calling catalog and inventory "
        "one after the other (latencies added). The nginx arm (a bare reverse proxy, the yardstick) counts "
        "the orders service and PostgreSQL only, not nginx's own CPU.",
        "",
    ]
    for key, title in (
        (
            "pass_through",
            "Pass-through: `GET /api/v1/orders/{id}` vs the orders service's `GET /orders/{id}`",
        ),
        ("product_list", "Product list: `GET /api/v1/products?page_size=20` vs catalog + inventory"),
    ):
        pair = refs.get(key) or {}
        if not pair or "error" in pair:
            lines += [f"### {title}", "", f"not measured: {pair.get('error')}", ""]
            continue
        lines += [
            f"### {title}",
            "",
            _row(["arm", "offered /s", "achieved /s", "errors", "p50 ms", "p99 ms", "CPU ms / request"]),
            _row(["---"] * 7),
        ]
        arms = [a for a in ("direct", "gateway", "nginx") if a in pair]
        for arm in arms:
            for step in [*pair[arm]["at_rates"], pair[arm]["closed_loop"]]:
                if not step:
                    continue
                lines.append(
                    _row(
                        [
                            arm,
                            step["offered_rate"],
                            step["per_second"],
                            step["errors"],
                            step["latency_ms"]["p50"],
                            step["latency_ms"]["p99"],
                            step["cpu_ms_per_request"]["total"],
                        ]
                    )
                )
        lines.append("")
        for arm, ratio in (pair.get("ratio") or {}).items():
            lines.append(
                f"- **{arm} / direct throughput: {ratio.get('throughput')}** (closed loop); direct CPU / "
                f"{arm} CPU per request at {refs.get('rates')}/s: {ratio.get('cpu_per_request_direct_over_this')}"
            )
        lines.append("")
    return lines


def _checkout_row(label: str, r: dict[str, Any]) -> str:
    return _row(
        [
            label,
            r["accepted"],
            r["errors"],
            r["post_ms"]["p50"],
            r["post_ms"]["p99"],
            r["completion_ms"]["p50"],
            r["completion_ms"]["p99"],
            r["completion_ms"]["p99_9"],
            r["outbox_relay_lag_ms"]["p99"],
            (r.get("settle") or {}).get("seconds"),
            r.get("cpu_ms_per_order_system"),
            "yes" if r["sustainable"] else "no: " + "; ".join(r.get("why_not") or ["?"]),
        ]
    )


def markdown(results: dict[str, Any], images: list[str]) -> str:
    m = results["machine"]
    settings = results.get("settings", {})
    lines = [
        "# Emporium benchmark",
        "",
        f"Run {results['started_at']} on {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, "
        f"Python {m['python']}, {m['postgresql']}, Kafka {m['kafka']} ({m['java']}). The load generator ran on the "
        f"same machine: {settings.get('load', 'open loop')}; its CPU is counted apart. "
        + (
            f"The whole run took {round(results['wall_seconds'] / 60, 1)} min."
            if results.get("wall_seconds")
            else ""
        ),
        "",
        f"Shape: {settings.get('kafka_brokers', 1)} Kafka broker(s), "
        f"{settings.get('service_replicas', 1)} replica(s) of each service behind one gateway.",
        "",
        f"**Maximum sustainable order rate: {results.get('max_sustainable_orders_per_second')} orders/s** "
        f"(sustainable: {settings.get('sustainable', 'completion p99 < 1 s, no backlog left')}).",
        "",
        *headline_rows(results),
        *peer_rows(results),
        "## Checkout steps",
        "",
        _row(
            [
                "offered /s",
                "accepted",
                "errors",
                "POST p50",
                "POST p99",
                "completion p50",
                "completion p99",
                "completion p99.9",
                "relay lag p99",
                "settled in s",
                "CPU ms / order",
                "sustainable",
            ]
        ),
        _row(["---"] * 12),
    ]
    lines += [_checkout_row(f"{r['offered_rate']}", r) for r in results.get("search", [])]
    for n, r in enumerate(results.get("at_70_runs") or ([results["at_70"]] if results.get("at_70") else [])):
        lines.append(_checkout_row(f"**{r['offered_rate']} (70 %, run {n + 1})**", r))
    if results.get("at_50"):
        lines.append(_checkout_row(f"**{results['at_50']['offered_rate']} (50 %)**", results["at_50"]))
    lines += [
        "",
        "Latencies in ms, each from the request's scheduled start. Completion = scheduled POST → the "
        "order's terminal status (read from the orders database, so following orders adds no load). "
        "Searches: "
        + ", ".join(f"{s['max']} orders/s in {s['steps']} steps" for s in results.get("searches", []))
        + ".",
        "",
    ]
    plan = results.get("completion_query_plan")
    if isinstance(plan, dict) and plan.get("plans"):
        lines += [
            f"Completion query ({plan['ids']} ids, order_history of {plan['order_history_rows']} rows): the "
            f"index {'**is usable**' if plan['index_usable'] else '**is NOT usable**'}; as planned, then with "
            "sequential scans off:",
            "",
            "```",
            *plan["plans"]["as_planned"],
            "",
            *plan["plans"]["seqscan_off"],
            "```",
            "",
        ]
    if results.get("at_70") and not results.get("headline"):
        cpu = results["at_70"]["cpu_ms_per_order"]
        lines += ["### CPU per order at 70 %", "", _row(["process", "CPU ms / order"]), _row(["---", "---"])]
        lines += [_row([name, value]) for name, value in sorted(cpu.items(), key=lambda kv: -kv[1])]
        lines += [""]
    if results.get("at_70"):
        lines += [
            f"Consumer lag after the 70 % run shown: {results['at_70']['consumer_lag_after']}; outbox "
            f"backlog: {results['at_70']['outbox_backlog_after']}.",
            "",
        ]
    lines += tracing_rows(results.get("tracing") or {})
    for key, name in (("at_50", "50 %"), ("at_70", "70 %")):
        if (results.get(key) or {}).get("hops_ms"):
            import hops

            lines += [
                f"### Where an order's time goes at {name} ({results[key]['offered_rate']} orders/s)",
                "",
                "From timestamps the services store anyway (outbox written/picked up, inbox handling "
                "start, order history); segments of confirmed orders.",
                "",
            ]
            lines += [*hops.markdown_rows(results[key]["hops_ms"], _row), ""]
    runs = results.get("at_70_runs") or []
    first = next((r for r in runs if r.get("hops_ms")), None)
    if first is not None and first is not results.get("at_70"):
        import hops

        lines += [
            f"### Where an order's time goes at 70 % ({first['offered_rate']} orders/s, first run)",
            "",
            "From timestamps the services store anyway (outbox written/picked up, inbox handling "
            "start, order history); segments of confirmed orders.",
            "",
            *hops.markdown_rows(first["hops_ms"], _row),
            "",
        ]
    for key, title in (("browse", "Browsing"), ("mixed", "Mixed: 90 % browse, 10 % checkout")):
        r = results.get(key)
        if not r:
            continue
        lines += [
            f"## {title}",
            "",
            f"Offered {r['offered_rate']}/s for {r['seconds']} s: {r['reads_per_second']} "
            f"reads/s, {r['read_errors']} errors.",
            "",
            _row(["read", "p50", "p95", "p99", "p99.9"]),
            _row(["---"] * 5),
        ]
        for kind, s in [("all", r["read_ms"]), *r["by_kind_ms"].items()]:
            lines.append(_row([kind, s["p50"], s["p95"], s["p99"], s["p99_9"]]))
        if key == "mixed" and "completion_ms" in r:
            lines += [
                "",
                f"Orders in the mix: {r['orders']}, POST p99 {r['post_ms']['p99']} ms, completion p50 "
                f"{r['completion_ms']['p50']} / p99 {r['completion_ms']['p99']} ms.",
            ]
        lines.append("")
    lines += gateway_rows(results)
    refs = results.get("references", {})
    if refs:
        lines += ["## Other references, same run, same machine", ""]
        pg = refs.get("postgres_order_plus_outbox", {})
        if "tps" in pg:
            lines += [
                f"- **Database ceiling** (pgbench, one order insert + one outbox insert per transaction, "
                f"{pg.get('clients')} clients, fsync on): {round(pg['tps'])} transactions/s, "
                f"{pg['latency_ms_avg']} ms average.",
                "",
            ]
        reads = [(name, refs.get(f"catalog_read_{name}")) for name in ("direct", "gateway", "nginx")]
        if all(r and "requests_per_second" in r for _, r in reads):  # runs before the vegeta references
            direct = reads[0][1]["requests_per_second"]
            lines += [
                "- **Gateway cost**: `GET /products?page_size=20` with wrk (32 connections, same machine):",
                "",
                _row(["path", "req/s", "× direct", "p50 ms", "p99 ms"]),
                _row(["---"] * 5),
            ]
            for name, r in reads:
                lines.append(
                    _row(
                        [
                            name,
                            r["requests_per_second"],
                            round(r["requests_per_second"] / direct, 2),
                            r.get("latency_ms_p50"),
                            r.get("latency_ms_p99"),
                        ]
                    )
                )
            lines.append("")
        tool, ours = refs.get("kafka_tool_end_to_end", {}), refs.get("kafka_our_hop", {})
        if "avg_ms" in tool and "avg_ms" in ours:
            lines += [
                "- **One Kafka hop** (produce → consume, one record at a time, acks=all): Kafka's own "
                "EndToEndLatency tool against our producer and consumer settings (the tool's percentiles are "
                "whole milliseconds, truncated):",
                "",
                _row(["client", "avg", "p50", "p99", "p99.9"]),
                _row(["---"] * 5),
                _row(
                    ["Kafka tool", round(tool["avg_ms"], 2), tool["p50_ms"], tool["p99_ms"], tool["p999_ms"]]
                ),
                _row(
                    [
                        "ours (aiokafka)",
                        round(ours["avg_ms"], 2),
                        round(ours["p50_ms"], 2),
                        round(ours["p99_ms"], 2),
                        round(ours["p999_ms"], 2),
                    ]
                ),
                "",
            ]
        errors = {k: v["error"] for k, v in refs.items() if isinstance(v, dict) and "error" in v}
        if errors:
            lines += [f"- reference errors: {errors}", ""]
    for image in images:
        lines += [f"![{image}]({image})", ""]
    return "\n".join(lines)


def write(results: dict[str, Any], out: Path) -> None:
    images = plots(results, out)
    (out / "report.md").write_text(markdown(results, images))


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results"
    write(json.loads((folder / "results.json").read_text()), folder)

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
        ax.axhline(1000, color="grey", lw=0.8, ls=":")
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
    run = results.get("at_70")
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


def markdown(results: dict[str, Any], images: list[str]) -> str:
    m = results["machine"]
    lines = [
        "# Emporium benchmark",
        "",
        f"Run {results['started_at']} on {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, "
        f"Python {m['python']}, {m['postgresql']}, Kafka {m['kafka']} ({m['java']}). The load generator ran on the "
        "same machine. Load is open loop; every latency counts from the request's scheduled start.",
        "",
        f"Shape: {results.get('settings', {}).get('kafka_brokers', 1)} Kafka broker(s), "
        f"{results.get('settings', {}).get('service_replicas', 1)} replica(s) of each service behind one gateway.",
        "",
        f"**Maximum sustainable order rate: {results.get('max_sustainable_orders_per_second')} orders/s** "
        "(completion p99 < 1 s, every order finished within 5 s of its step, no outbox or consumer backlog left).",
        "",
        "## Checkout",
        "",
        _row(
            [
                "offered /s",
                "accepted",
                "errors",
                "POST p50",
                "POST p95",
                "POST p99",
                "completion p50",
                "completion p99",
                "completion p99.9",
                "relay lag p99",
                "sustainable",
            ]
        ),
        _row(["---"] * 11),
    ]
    labelled = [(f"{r['offered_rate']}", r) for r in results.get("search", [])]
    for key, name in (("at_50", "50 %"), ("at_70", "70 %")):
        if results.get(key):
            labelled.append((f"**{results[key]['offered_rate']} ({name})**", results[key]))
    for label, r in labelled:
        lines.append(
            _row(
                [
                    label,
                    r["accepted"],
                    r["errors"],
                    r["post_ms"]["p50"],
                    r["post_ms"]["p95"],
                    r["post_ms"]["p99"],
                    r["completion_ms"]["p50"],
                    r["completion_ms"]["p99"],
                    r["completion_ms"]["p99_9"],
                    r["outbox_relay_lag_ms"]["p99"],
                    "yes" if r["sustainable"] else "no",
                ]
            )
        )
    lines += [
        "",
        "Latencies in ms. Completion = scheduled POST → the order's terminal status (read from the "
        "orders database, so following orders adds no load).",
        "",
    ]
    if results.get("at_70"):
        cpu = results["at_70"]["cpu_ms_per_order"]
        lines += ["### CPU per order at 70 %", "", _row(["process", "CPU ms / order"]), _row(["---", "---"])]
        lines += [_row([name, value]) for name, value in sorted(cpu.items(), key=lambda kv: -kv[1])]
        lines += [
            "",
            f"Total: {round(sum(cpu.values()), 2)} CPU ms per order. Consumer lag after the run: "
            f"{results['at_70']['consumer_lag_after']}; outbox backlog: {results['at_70']['outbox_backlog_after']}.",
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
    refs = results.get("references", {})
    if refs:
        lines += ["## References, same run, same machine", ""]
        pg = refs.get("postgres_order_plus_outbox", {})
        if "tps" in pg:
            lines += [
                f"- **Database ceiling** (pgbench, one order insert + one outbox insert per transaction, "
                f"{pg.get('clients')} clients, fsync on): {round(pg['tps'])} transactions/s, "
                f"{pg['latency_ms_avg']} ms average.",
                "",
            ]
        reads = [(name, refs.get(f"catalog_read_{name}")) for name in ("direct", "gateway", "nginx")]
        if all(r and "requests_per_second" in r for _, r in reads):
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

"""The fault-injection suite: ``make faults`` (every scenario: the single-node ones, then the
cluster ones on 3 brokers x 2 replicas, each set on a stack of its own) or ``--short`` (what
`make test` runs: single-node only). ``--only`` filters both sets; ``--no-cluster`` skips the
cluster set.

Prints a table, scenario by invariant, and exits non-zero on any violation or harness error
(a scenario that did not inject exactly the faults it planned, or could not run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import tempfile
import time
from pathlib import Path

from cluster import CLUSTER, ClusterFaultSuite
from harness import INVARIANTS, FaultSuite, Result, Scenario
from scenarios import ALL, SHORT


def table(results: list[Result]) -> str:
    head = [
        "scenario", "brokers", "replicas", "orders", "refused", "planned", "injected", "dups seen",
        *INVARIANTS, "harness", "s",
    ]  # fmt: skip
    rows = [
        [
            r.scenario,
            r.brokers,
            r.replicas,
            r.orders,
            r.not_accepted,
            r.planned,
            r.injected,
            r.duplicates,
            *[len(r.violations[i]) for i in INVARIANTS],
            len(r.harness_errors),
            f"{r.seconds:.0f}",
        ]
        for r in results
    ]
    total = [
        "TOTAL",
        "",
        "",
        sum(r.orders for r in results),
        sum(r.not_accepted for r in results),
        sum(r.planned for r in results),
        sum(r.injected for r in results),
        sum(r.duplicates for r in results),
        *[sum(len(r.violations[i]) for r in results) for i in INVARIANTS],
        sum(len(r.harness_errors) for r in results),
        f"{sum(r.seconds for r in results):.0f}",
    ]
    widths = [max(len(str(row[c])) for row in [head, *rows, total]) for c in range(len(head))]

    def line(row: list[object]) -> str:
        return "| " + " | ".join(str(v).ljust(widths[c]) for c, v in enumerate(row)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *map(line, rows), sep, line(total)])


async def main(short: bool, only: str | None, seed: int, report: Path | None, cluster: bool = True) -> int:
    def chosen(scenarios: list[Scenario]) -> list[Scenario]:
        return [s for s in scenarios if not only or only.lower() in s.name.lower()]

    single = chosen(SHORT if short else ALL)
    on_cluster = chosen(CLUSTER) if cluster and not short else []
    load = {"load_seconds": 4.0 if short else 8.0, "rate": 8.0 if short else 12.0, "seed": seed}
    results: list[Result] = []
    started = time.monotonic()
    for suite_type, scenarios in ((FaultSuite, single), (ClusterFaultSuite, on_cluster)):
        if scenarios:  # each set on a stack of its own, started once for all its scenarios
            await run_suite(
                suite_type(Path(tempfile.mkdtemp(prefix="emporium-faults-")), **load), scenarios, results
            )
    print()
    print(table(results))
    if report:
        report.write_text(json.dumps([r.__dict__ for r in results], indent=2, default=str))
    violations = sum(r.violation_count for r in results)
    harness = sum(len(r.harness_errors) for r in results)
    planned, injected = sum(r.planned for r in results), sum(r.injected for r in results)
    print(
        f"\n{len(results)} scenarios (seed {seed}), {injected} of {planned} planned faults injected, "
        f"{violations} violations, {harness} harness errors, {time.monotonic() - started:.0f}s in all"
    )
    return 1 if violations or harness or len(results) < len(single) + len(on_cluster) else 0


async def run_suite(suite: FaultSuite, scenarios: list[Scenario], results: list[Result]) -> None:
    started = time.monotonic()
    try:
        await suite.start()
        print(
            f"stack of {suite.brokers} broker(s) x {suite.replicas} replica(s) up in "
            f"{time.monotonic() - started:.0f}s (work dir {suite.work_dir})",
            flush=True,
        )
        for scenario in scenarios:
            result = await suite.run(scenario)
            results.append(result)
            flags = [f"{result.violation_count} VIOLATIONS"] if result.violation_count else []
            flags += [f"{len(result.harness_errors)} HARNESS ERRORS"] if result.harness_errors else []
            print(
                f"  {scenario.name}: {result.orders} orders, {result.injected}/{result.planned} "
                f"faults injected/planned, {result.duplicates} duplicates seen, "
                f"{', '.join(flags) or 'ok'} ({result.seconds:.0f}s)",
                flush=True,
            )
            for invariant, problems in result.violations.items():
                for problem in problems[:5]:
                    print(f"      {invariant}: {problem}", flush=True)
            for error in result.harness_errors:
                print(f"      harness: {error}", flush=True)
            for event in result.timeline if result.harness_errors else []:
                print(f"      timeline: {event}", flush=True)
    finally:
        await suite.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--short", action="store_true", help="the short form run by make test")
    parser.add_argument("--only", help="run the scenarios whose name contains this")
    parser.add_argument(
        "--cluster",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the cluster scenarios (3 brokers x 2 replicas; never with --short)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--report", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops like Ctrl-C: everything started is stopped

    signal.signal(signal.SIGTERM, interrupted)
    sys.exit(asyncio.run(main(args.short, args.only, args.seed, args.report, args.cluster)))

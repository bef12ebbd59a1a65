"""Profile the checkout path under open-loop load with py-spy (sampling, no code change).

    uv run python bench/profile.py [--rate R] [--seconds 20] [--out bench/results/profile]

The load is vegeta's, as in ``run.py``, at 70 % of the maximum sustainable rate: ``--rate`` if
given, else 70 % of ``max_sustainable_orders_per_second`` in ``--results`` (the last ``make
bench``'s results.json), else 70 % of a quick search made here first. (``make bench
BENCH_FLAGS=--profile`` profiles at 70 % inside the benchmark's own run.) For each process it
writes a flame graph (SVG), the collapsed stacks, and a text summary of where the time goes: the
functions with the most samples on top of the stack (self time) and the frames of the project's
own code with the most samples anywhere on it (inclusive time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import loadgen
import vegeta

from emporium_devstack.stack import Stack
from emporium_devstack.testing import cache_dir, repo_root

if TYPE_CHECKING:
    from run import Bench

PROCESSES = ("gateway", "orders", "inventory", "payments", "notifications", "catalog")
OURS = ("emporium_", "/services/", "/gateway/src/")
# Self time is charged to the first library found in the stack, innermost first, so a psycopg
# call made by SQLAlchemy counts as psycopg and the rest of SQLAlchemy's work as sqlalchemy.
LAYERS = (
    ("psycopg", ("psycopg",)),
    ("sqlalchemy", ("sqlalchemy",)),
    ("aiokafka", ("aiokafka", "kafka/")),
    ("httpx/httpcore", ("httpx", "httpcore", "anyio", "h11")),
    ("pydantic", ("pydantic",)),
    ("fastapi/starlette/uvicorn", ("fastapi", "starlette", "uvicorn")),
    ("opentelemetry", ("opentelemetry",)),
    ("prometheus", ("prometheus_client",)),
    ("json", ("json/",)),
    ("logging", ("logging/",)),
    ("our code", OURS),
    ("asyncio/uvloop", ("asyncio/", "uvloop")),
)


def layer_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, markers in LAYERS:
            if any(marker in frame for marker in markers):
                return name
    return "other"


def summarize(collapsed: Path, top: int = 25) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        layers[layer_of(frames)] += count
        for frame in set(frames):
            if (
                any(marker in frame for marker in OURS)
                or "sqlalchemy" in frame
                or "aiokafka" in frame
                or "httpx" in frame
                or "pydantic" in frame
                or "opentelemetry" in frame
            ):
                inclusive[frame] += count
    lines = [f"{total} samples (only while holding the GIL: CPU, not waiting)", "", "by layer (self time):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in layers.most_common()]
    lines += ["", "self (top of stack):"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "inclusive (frames of our code and main libraries):"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    return "\n".join(lines)


async def record(bench: Bench, *, rate: float, seconds: float, out: Path) -> dict[str, Any]:
    """Sample the gateway and every service with py-spy while vegeta drives ``rate`` orders/s."""
    out.mkdir(parents=True, exist_ok=True)
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    stack = bench.stack
    samplers = {
        name: subprocess.Popen(
            [
                pyspy,
                "record",
                "--pid",
                str(stack.services[name].pid),
                "--duration",
                str(int(seconds)),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(out / f"{name}.collapsed"),
                "--nonblocking",
                "--gil",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name in PROCESSES
    }
    await asyncio.sleep(1)
    step = await bench.checkout_step(rate, seconds - 2)
    for proc in samplers.values():
        await asyncio.to_thread(proc.wait, 60)
    summaries = {}
    for name in PROCESSES:
        collapsed = out / f"{name}.collapsed"
        if not collapsed.exists():
            print(f"{name}: no samples")
            continue
        text = summarize(collapsed)
        (out / f"{name}.txt").write_text(text + "\n")
        summaries[name] = text.splitlines()[:22]
        print(f"\n== {name}\n" + "\n".join(summaries[name]))
    return {
        "rate": rate,
        "seconds": seconds,
        "accepted": step["accepted"],
        "folder": str(out),
        "top": summaries,
    }


def _rate_from(results: Path) -> float | None:
    try:
        best = json.loads(results.read_text()).get("max_sustainable_orders_per_second")
    except (OSError, ValueError):
        return None
    return round(float(best) * 0.7, 1) if best else None


async def main(args: argparse.Namespace) -> int:
    import run

    work = Path(tempfile.mkdtemp(prefix="emporium-profile-"))
    stack = Stack(
        root=repo_root(),
        cache_dir=cache_dir(),
        work_dir=work,
        free_ports=True,
        echo=False,
        log_level="WARNING",
    )
    generator = await asyncio.to_thread(vegeta.ensure_vegeta, cache_dir())
    await asyncio.to_thread(stack.start, 180)
    try:
        async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as http:
            shop = await loadgen.Shop.prepare(http, stack.admin_email, stack.admin_password)
        bench = run.Bench(stack, shop, generator, seed=5)
        await bench.start()
        try:
            await bench.checkout_step(10, 3)  # warm up
            rate = args.rate or _rate_from(args.results)
            if rate is None:
                print("no --rate and no results.json: a quick search for the maximum first", flush=True)
                best, _ = await run.find_max_rate(bench, start=20.0, step_seconds=5.0, ceiling=1500.0)
                rate = round(max(best, 10.0) * 0.7, 1)
            print(f"profiling at {rate} orders/s", flush=True)
            await record(bench, rate=rate, seconds=args.seconds, out=args.out)
        finally:
            await bench.close()
    finally:
        await asyncio.to_thread(stack.stop)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, help="orders/s (default: 70 %% of the maximum, see above)")
    parser.add_argument("--results", type=Path, default=repo_root() / "bench" / "results" / "results.json")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=repo_root() / "bench" / "results" / "profile")
    sys.exit(asyncio.run(main(parser.parse_args())))

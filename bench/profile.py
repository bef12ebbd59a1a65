"""Profile the checkout path under open-loop load with py-spy (sampling, no code change).

    uv run python bench/profile.py [--rate 8] [--seconds 20] [--out bench/results/profile]

Starts the stack, drives orders at ``--rate`` per second and samples the gateway and every
service meanwhile. For each process it writes a flame graph (SVG), the collapsed stacks, and a
text summary of where the time goes: the functions with the most samples on top of the stack
(self time) and the frames of the project's own code with the most samples anywhere on it
(inclusive time).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import loadgen

from emporium_devstack.stack import Stack
from emporium_devstack.testing import cache_dir, repo_root

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


async def main(args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    work = Path(tempfile.mkdtemp(prefix="emporium-profile-"))
    stack = Stack(
        root=repo_root(),
        cache_dir=cache_dir(),
        work_dir=work,
        free_ports=True,
        echo=False,
        log_level="WARNING",
    )
    await asyncio.to_thread(stack.start, 180)
    try:
        async with httpx.AsyncClient(
            base_url=stack.gateway_url, timeout=30, limits=httpx.Limits(max_connections=500)
        ) as http:
            shop = await loadgen.Shop.prepare(http, stack.admin_email, stack.admin_password)
            rng = random.Random(5)
            await loadgen.open_loop(5, 3, loadgen.checkout_fire(shop, rng))  # warm up
            samplers = {
                name: subprocess.Popen(
                    [
                        pyspy,
                        "record",
                        "--pid",
                        str(stack.services[name].pid),
                        "--duration",
                        str(int(args.seconds)),
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
            run = await loadgen.open_loop(args.rate, args.seconds - 2, loadgen.checkout_fire(shop, rng))
            for proc in samplers.values():
                await asyncio.to_thread(proc.wait, 60)
        print(f"{len(run.of('order'))} orders at {args.rate}/s while sampling")
        for name in PROCESSES:
            collapsed = out / f"{name}.collapsed"
            if not collapsed.exists():
                print(f"{name}: no samples")
                continue
            text = summarize(collapsed)
            (out / f"{name}.txt").write_text(text + "\n")
            print(f"\n== {name}\n" + "\n".join(text.splitlines()[:22]))
    finally:
        await asyncio.to_thread(stack.stop)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=8.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=repo_root() / "bench" / "results" / "profile")
    sys.exit(asyncio.run(main(parser.parse_args())))

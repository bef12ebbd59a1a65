"""The gateway's cost per request: CPU microseconds of the gateway process per relayed request,
with each upstream HTTP client, on a pass-through GET and on POST /orders.

    uv run python bench/gateway_clients.py [--clients httpx,aiohttp] [--runs 3] [--seconds 8] [--src LABEL=PATH]
                                           [--concurrency 16] [--out bench/results/gateway-clients]

Starts a stand-in upstream (a bare ASGI app under uvicorn answering like the orders service:
an order for ``GET /orders/{id}``, ``202 {id, status}`` for ``POST /orders``), then for each
client the real gateway (``python -m gateway serve``, ``GATEWAY_UPSTREAM_CLIENT``) pointed at
it, and drives it with wrk (compiled, closed loop: ``--concurrency`` connections, one thread)
with a valid access token. The figure to trust on a shared machine is the gateway's CPU time per
request, read from ``/proc/<pid>/schedstat`` (time on a CPU, in ns) around each run, not wall
time; p50/p99 are wrk's. Each client x route is measured ``--runs`` times, interleaved, and
the report gives min and median. Writes ``results.json`` and ``report.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-that-is-long-enough-for-hs256-signing"
ORDER_ID = str(uuid.uuid4())
PRODUCT_ID = str(uuid.uuid4())
# The load generator's order (bench/loadgen.py): one line and a card token.
ORDER_BODY = json.dumps({"items": [{"product_id": PRODUCT_ID, "quantity": 1}], "payment_token": "tok_visa"})

# ---------------------------------------------------------------------------- the stand-in upstream

_ORDER = json.dumps(
    {
        "id": ORDER_ID,
        "customer_id": str(uuid.uuid4()),
        "status": "CONFIRMED",
        "items": [{"product_id": PRODUCT_ID, "quantity": 1, "unit_price_cents": 1999}],
        "total_cents": 1999,
        "currency": "USD",
        "created_at": "2026-01-01T00:00:00+00:00",
        "updated_at": "2026-01-01T00:00:01+00:00",
    }
).encode()
_ACCEPTED = json.dumps({"id": ORDER_ID, "status": "PENDING"}).encode()


async def upstream_app(scope, receive, send):  # type: ignore[no-untyped-def]
    """As cheap as an HTTP server in Python gets, so that its CPU leaves the gateway's alone."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    status, body = (202, _ACCEPTED) if scope["method"] == "POST" else (200, _ORDER)
    if scope["path"] == "/readyz":
        status, body = 200, b'{"status":"ready"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def cpu_ns(pid: int) -> int:
    """Time the process has run on a CPU, all threads (the first field of schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        total += int((task / "schedstat").read_text().split()[0])
    return total


def start_upstream(port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", "gateway_clients:upstream_app", "--port", str(port)]
    command += ["--loop", "uvloop", "--http", "httptools", "--log-level", "warning", "--no-access-log"]
    return subprocess.Popen(command, cwd=Path(__file__).parent)


def start_gateway(port: int, upstream: str, client: str, src: str | None) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "GATEWAY_PORT": str(port),
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_JWT_SECRET": SECRET,
        "GATEWAY_UPSTREAM_CLIENT": client,
        "GATEWAY_DATABASE_URL": "postgresql+psycopg://bench@127.0.0.1:1/unused",  # no route here needs it
        "GATEWAY_LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
    }
    for service in ("catalog", "inventory", "orders", "payments", "notifications"):
        env[f"GATEWAY_{service.upper()}_URL"] = upstream
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)  # spans are made (and trace context sent), not exported
    return subprocess.Popen([sys.executable, "-m", "gateway", "serve"], env=env, stdout=subprocess.DEVNULL)


def access_token() -> str:
    from gateway.adapters.security import JwtTokens
    from gateway.domain.model import Role, User

    user = User(
        id=uuid.uuid4(),
        email="bench@example.com",
        name="Bench",
        role=Role.CUSTOMER,
        password_hash="unused",
        created_at=datetime.now(UTC),
    )
    return JwtTokens(secret=SECRET, ttl_seconds=3600, issuer="emporium-gateway").issue(user).access_token


# ---------------------------------------------------------------------------- wrk

_WRK_SCRIPT = """
wrk.method = "{method}"
wrk.headers["Authorization"] = "Bearer {token}"
wrk.headers["Content-Type"] = "application/json"
{body}
done = function(summary, latency, requests)
  io.write(string.format('WRK {{"requests": %d, "errors": %d, "non2xx": %d, "p50_us": %d, "p99_us": %d}}\\n',
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, summary.errors.status, latency:percentile(50), latency:percentile(99)))
end
"""

ROUTES = {
    "GET /orders/{id}": ("GET", f"/api/v1/orders/{ORDER_ID}", None),
    "POST /orders": ("POST", "/api/v1/orders", ORDER_BODY),
}


def wrk(url: str, method: str, body: str | None, token: str, seconds: int, concurrency: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            _WRK_SCRIPT.format(
                method=method, token=token, body=f"wrk.body = {json.dumps(body)}" if body else ""
            )
        )
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s", "-s", script.name, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    line = next(line for line in out.splitlines() if line.startswith("WRK "))
    return json.loads(line[4:])


def measure(gateway_pid: int, url: str, route: str, token: str, seconds: int, concurrency: int) -> dict:
    method, path, body = ROUTES[route]
    before = cpu_ns(gateway_pid)
    result = wrk(url + path, method, body, token, seconds, concurrency)
    spent = cpu_ns(gateway_pid) - before
    if result["non2xx"] or result["errors"] > result["requests"] / 100:
        raise RuntimeError(f"{route}: {result}")  # a few socket errors (a busy machine) are reported
    return {**result, "cpu_us_per_request": spent / 1000 / max(result["requests"], 1)}


# ---------------------------------------------------------------------------- the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="httpx,aiohttp")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--src", action="append", default=[], help="LABEL=PATH: also measure the gateway/src at PATH"
    )
    parser.add_argument("--label", default="", help="written into the report (e.g. the commit measured)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/gateway-clients")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed (apt-get install wrk)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally blocks stop the children
    # Variants: each client on this tree, and with --src LABEL=PATH also on another copy of
    # gateway/src (e.g. `git archive <commit> gateway/src`), interleaved run by run.
    variants = [(client, None) for client in args.clients.split(",")]
    for spec in args.src:
        label, _, path = spec.partition("=")
        variants += [(f"{label}:{client}", path) for client in args.clients.split(",")]
    token = access_token()
    upstream_port = free_port()
    upstream = start_upstream(upstream_port)
    samples: dict[str, dict[str, list[dict]]] = {name: {r: [] for r in ROUTES} for name, _ in variants}
    try:
        wait_listening(upstream_port)
        for run in range(args.runs):
            for name, src in variants:
                port = free_port()
                gateway = start_gateway(port, f"http://127.0.0.1:{upstream_port}", name.split(":")[-1], src)
                try:
                    wait_listening(port)
                    url = f"http://127.0.0.1:{port}"
                    for route in ROUTES:  # a short warm-up, then the counted run
                        measure(gateway.pid, url, route, token, 3, args.concurrency)
                        sample = measure(gateway.pid, url, route, token, args.seconds, args.concurrency)
                        samples[name][route].append(sample)
                        print(
                            f"run {run + 1} {name:16s} {route:16s} {sample['cpu_us_per_request']:7.1f} us CPU/req"
                            f"  p50 {sample['p50_us'] / 1000:6.2f} ms  p99 {sample['p99_us'] / 1000:6.2f} ms"
                            f"  {sample['requests'] / args.seconds:7.0f} req/s",
                            flush=True,
                        )
                finally:
                    gateway.terminate()
                    gateway.wait(10)
    finally:
        upstream.terminate()
        upstream.wait(10)
    write_report(args, samples)


def write_report(args: argparse.Namespace, samples: dict[str, dict[str, list[dict]]]) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.label}-" if args.label else ""
    (args.out / f"{stem}results.json").write_text(json.dumps(samples, indent=2) + "\n")
    lines = [
        f"# Gateway cost per request{f' ({args.label})' if args.label else ''}",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, wrk -t1 -c{args.concurrency}, "
        f"{args.seconds:g} s per run, {args.runs} runs; CPU = the gateway process's time on a CPU "
        "per request (min / median); latency = wrk's, through the gateway to a stand-in upstream.",
        "",
        "| client | route | CPU µs/req min | CPU µs/req median | p50 ms (median) | p99 ms (median) | req/s (median) | socket errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for client, routes in samples.items():
        for route, runs in routes.items():
            cpu = [r["cpu_us_per_request"] for r in runs]
            lines.append(
                f"| {client} | {route} | {min(cpu):.0f} | {statistics.median(cpu):.0f} "
                f"| {statistics.median(r['p50_us'] for r in runs) / 1000:.2f} "
                f"| {statistics.median(r['p99_us'] for r in runs) / 1000:.2f} "
                f"| {statistics.median(r['requests'] for r in runs) / args.seconds:.0f} "
                f"| {sum(r['errors'] for r in runs)} |"
            )
    (args.out / f"{stem}report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

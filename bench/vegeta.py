"""vegeta, the compiled open-loop HTTP load generator, and the project's accounting of its results.

The Python generator (loadgen.open_loop) cost 1.7–3 ms of CPU per order on the same two cores as
the system it measured, which caps what the benchmark can see well below 400 orders/s. vegeta
(Go) starts requests on a constant schedule whatever the answers do, with a body and headers of
their own per request (JSON targets read lazily from stdin), and its CPU is counted apart.

- ``ensure_vegeta``: the binary, built once with ``go install`` from the Go module proxy into
  ``.cache/tools/bin`` (GOPATH and GOCACHE under ``.cache/go``); a second run reuses it.
- ``Target`` / ``target_lines``: vegeta's JSON target format, one request per line.
- ``attack``: one constant-rate attack; returns every result and the attack's own CPU seconds.
- ``from_schedule``: latency counted from each request's *scheduled* start (the attack's start +
  seq / rate), not from when vegeta got round to sending it, so a late start is not hidden.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import fcntl
import io
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MODULE = "github.com/tsenart/vegeta/v12"
VERSION = "v12.13.0"
LATE_S = 0.010  # a request vegeta started more than 10 ms after its slot counts as a late start


# ---------------------------------------------------------------------- the binary


def _go() -> str | None:
    found = shutil.which("go")
    if found:
        return found
    for candidate in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def ensure_vegeta(cache_dir: Path, *, version: str = VERSION) -> Path:
    """``<cache>/tools/bin/vegeta`` at ``version``, built with ``go install`` if missing (measured
    here: 40 s on 2 cores with an empty module cache). Safe from several processes."""
    tools = Path(cache_dir) / "tools"
    binary = tools / "bin" / "vegeta"
    stamp = tools / "vegeta.version"
    if binary.exists() and stamp.exists() and stamp.read_text().strip() == version:
        return binary
    tools.mkdir(parents=True, exist_ok=True)
    with open(tools / ".vegeta.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists() and stamp.exists() and stamp.read_text().strip() == version:
            return binary
        go = _go()
        if go is None:
            raise RuntimeError(
                "`go` not found (PATH, /usr/local/go/bin): the benchmark builds vegeta from the Go "
                "module proxy once. Install Go (apt-get install golang-go, or go.dev/dl)."
            )
        gopath = Path(cache_dir) / "go"
        env = dict(
            os.environ,
            GOPATH=str(gopath),
            GOCACHE=str(gopath / "build-cache"),
            GOBIN=str(tools / "bin"),
            GOFLAGS="-buildvcs=false -modcacherw",
            CGO_ENABLED="0",
            GOTOOLCHAIN="local",
        )
        result = subprocess.run(
            [go, "install", f"{MODULE}@{version}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if result.returncode != 0 or not binary.exists():
            raise RuntimeError(f"go install {MODULE}@{version} failed:\n{result.stdout[-4000:]}")
        stamp.write_text(version + "\n")
    return binary


# ---------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None

    def line(self) -> str:
        """vegeta's JSON target format (``-format=json``): the body base64, headers as lists."""
        found: dict[str, object] = {"method": self.method, "url": self.url}
        if self.headers:
            found["header"] = {k: [v] for k, v in self.headers.items()}
        if self.body is not None:
            found["body"] = base64.b64encode(self.body).decode()
        return json.dumps(found, separators=(",", ":"))


def target_lines(targets: Iterable[Target]) -> str:
    return "".join(t.line() + "\n" for t in targets)


# ---------------------------------------------------------------------- results


@dataclass
class Result:
    seq: int
    started: float  # wall clock, seconds (vegeta's timestamp: when the request was sent)
    latency: float  # seconds, from ``started``
    status: int  # 0 = transport error
    method: str
    url: str
    body: bytes
    error: str

    @property
    def finished(self) -> float:
        return self.started + self.latency


def parse_csv(text: str) -> list[Result]:
    """``vegeta encode --to csv`` rows (timestamp ns, code, latency ns, bytes out, bytes in, error,
    body base64, attack, seq, method, url, headers base64). The row vegeta writes when a lazy
    target stream ends ("no targets to attack", no method) is not a request and is dropped."""
    found = []
    for row in csv.reader(io.StringIO(text)):
        if len(row) < 11 or not row[9]:
            continue
        found.append(
            Result(
                seq=int(row[8]),
                started=int(row[0]) / 1e9,
                latency=int(row[2]) / 1e9,
                status=int(row[1]),
                method=row[9],
                url=row[10],
                body=base64.b64decode(row[6]) if row[6] else b"",
                error=row[5],
            )
        )
    return found


@dataclass
class Scheduled:
    """A result with its slot: ``scheduled`` = the attack's start + seq / rate."""

    result: Result
    scheduled: float

    @property
    def latency(self) -> float:
        return self.result.finished - self.scheduled

    @property
    def late(self) -> bool:
        return self.result.started - self.scheduled > LATE_S


def from_schedule(results: Sequence[Result], rate: float) -> list[Scheduled]:
    """Each result with its scheduled start. vegeta paces hit ``seq`` at ``began + seq / rate``;
    ``began`` is not in its output, so it is taken as the earliest ``started - seq / rate`` (a
    request is never sent before its slot, so that is the start itself, give or take the jitter
    of the one request that was on time)."""
    if not results:
        return []
    interval = 1.0 / rate
    began = min(r.started - r.seq * interval for r in results)
    return [Scheduled(r, began + r.seq * interval) for r in sorted(results, key=lambda r: r.seq)]


# ---------------------------------------------------------------------- one attack


@dataclass
class Attack:
    rate: float  # offered per second (0: as fast as ``max_workers`` allow)
    results: list[Result]
    cpu_seconds: float  # the attack process's own user + system CPU
    wall_seconds: float

    def scheduled(self) -> list[Scheduled]:
        if self.rate <= 0:
            raise ValueError("an unpaced attack has no schedule")
        return from_schedule(self.results, self.rate)


def rate_flag(rate: float) -> str:
    """vegeta's ``-rate`` takes an integer per period: 35.4/s is written 3540/100s."""
    return f"{round(rate * 100)}/100s"


async def attack(
    binary: Path,
    targets: Sequence[Target],
    *,
    rate: float,
    seconds: float,
    lazy: bool = True,
    max_workers: int = 10_000,
    workers: int = 64,
    timeout_s: float = 30.0,
) -> Attack:
    """One attack at a constant ``rate`` for ``seconds``. Lazy (the default): every target is
    used once, in order, and the attack ends when they run out (give ``rate * seconds`` of them).
    Not lazy: vegeta cycles through the targets. ``rate`` 0: as fast as ``max_workers`` workers
    go (closed loop), for a throughput ceiling."""
    with tempfile.TemporaryDirectory(prefix="emporium-vegeta-") as tmp:
        targets_path, output = Path(tmp) / "targets.json", Path(tmp) / "results.bin"
        targets_path.write_text(target_lines(targets))
        cmd = [
            str(binary),
            "attack",
            "-format=json",
            f"-targets={targets_path}",
            f"-rate={rate_flag(rate) if rate > 0 else 0}",
            # Lazy: the targets end the attack; the duration is only a bound past them.
            f"-duration={seconds + 5 if lazy else seconds:.3f}s",
            f"-max-workers={max_workers}",
            f"-workers={workers}",
            f"-timeout={timeout_s}s",
            "-http2=false",
            "-keepalive=true",
            f"-output={output}",
            *(["-lazy"] if lazy else []),
        ]
        loop = asyncio.get_running_loop()
        began = loop.time()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # wait4 rather than wait: the rusage of exactly this child is its CPU.
        _, status, usage = await asyncio.to_thread(os.wait4, proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = loop.time() - began
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
        if proc.returncode != 0:
            raise RuntimeError(f"vegeta attack failed ({proc.returncode}): {stderr[-2000:]}")
        encoded = await asyncio.to_thread(
            subprocess.run,
            [str(binary), "encode", "--to", "csv", str(output)],
            capture_output=True,
            text=True,
            check=True,
        )
    return Attack(
        rate=rate,
        results=parse_csv(encoded.stdout),
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        wall_seconds=wall,
    )

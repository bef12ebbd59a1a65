"""Jaeger (v2, an OpenTelemetry Collector distribution) built from the Go module proxy and run
on 127.0.0.1 with in-memory storage: OTLP in, the UI and query API out.

The binary is built once into ``<cache>/jaeger-<version>/jaeger`` (measured here: 27 s to fetch
the modules, 225 s to build on 2 cores; Go's build cache makes a rebuild fast) and reused.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from emporium_devstack.ports import free_port, log_tail, terminate

JAEGER_MODULE = "github.com/jaegertracing/jaeger"
JAEGER_VERSION = "v1.76.0"  # the module's tag; the program in it is Jaeger v2

CONFIG_TEMPLATE = """\
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    logs:
      level: warn
    metrics:
      level: none
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{otlp_grpc_port}
      http:
        endpoint: 127.0.0.1:{otlp_http_port}
processors:
  batch: {{}}
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: {max_traces}
  jaeger_query:
    storage:
      traces: memstore
    grpc:
      endpoint: 127.0.0.1:{query_grpc_port}
    http:
      endpoint: 127.0.0.1:{ui_port}
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


def jaeger_built(cache_dir: Path, *, version: str = JAEGER_VERSION) -> bool:
    return (Path(cache_dir) / f"jaeger-{version}" / "jaeger").exists()


def ensure_jaeger(cache_dir: Path, *, version: str = JAEGER_VERSION) -> Path:
    """The Jaeger binary, built with ``go build`` on first use. Safe from several processes."""
    base = Path(cache_dir) / f"jaeger-{version}"
    binary = base / "jaeger"
    if binary.exists():
        return binary
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists():
            return binary
        go = shutil.which("go")
        if go is None:
            raise RuntimeError(
                "`go` (1.24 or later) not found on PATH: it builds Jaeger from the Go module proxy once. "
                "Install Go, or run without the observability stack: EMPORIUM_OBSERVE=0"
            )
        module = base / "build"
        shutil.rmtree(module, ignore_errors=True)
        module.mkdir()
        env = dict(os.environ, GOFLAGS="-mod=mod -buildvcs=false", CGO_ENABLED="0", GOTOOLCHAIN="local")
        partial = base / "jaeger.partial"
        started = time.monotonic()
        for cmd in (
            [go, "mod", "init", "emporium.local/jaeger-build"],
            [go, "get", "-tool", f"{JAEGER_MODULE}/cmd/jaeger@{version}"],
            [go, "build", "-trimpath", "-o", str(partial), f"{JAEGER_MODULE}/cmd/jaeger"],
        ):
            result = subprocess.run(
                cmd, cwd=module, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            if result.returncode != 0:
                raise RuntimeError(
                    f"{' '.join(cmd[1:3])} failed ({result.returncode}):\n{result.stdout[-4000:]}"
                )
        partial.rename(binary)
        (base / "built.json").write_text(json.dumps({"seconds": round(time.monotonic() - started, 1)}))
        shutil.rmtree(module, ignore_errors=True)
    return binary


class Jaeger:
    """One Jaeger process on 127.0.0.1. Ports are chosen free unless given, and kept in
    ``data_dir/ports.json`` across restarts (the services keep exporting to the same address)."""

    def __init__(
        self,
        *,
        binary: Path,
        data_dir: Path,
        ui_port: int | None = None,
        otlp_grpc_port: int | None = None,
        otlp_http_port: int | None = None,
        max_traces: int = 20000,
    ) -> None:
        self.binary = Path(binary)
        self.data_dir = Path(data_dir).resolve()
        self.log_path = self.data_dir / "jaeger.log"
        self.max_traces = max_traces
        self.ports: dict[str, int | None] = {
            "ui_port": ui_port,
            "otlp_grpc_port": otlp_grpc_port,
            "otlp_http_port": otlp_http_port,
            "query_grpc_port": None,
        }
        saved = self.data_dir / "ports.json"
        if saved.exists():
            for name, port in json.loads(saved.read_text()).items():
                if self.ports.get(name) is None:
                    self.ports[name] = int(port)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['ui_port']}"

    @property
    def otlp_http_endpoint(self) -> str:
        """For ``OTEL_EXPORTER_OTLP_ENDPOINT`` (OTLP over HTTP/protobuf)."""
        return f"http://127.0.0.1:{self.ports['otlp_http_port']}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 60) -> None:
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        taken: set[int] = set()
        for name, port in self.ports.items():
            while port is None or port in taken:
                port = free_port()
            self.ports[name] = port
            taken.add(port)
        (self.data_dir / "ports.json").write_text(json.dumps(self.ports))
        config = self.data_dir / "config.yaml"
        config.write_text(CONFIG_TEMPLATE.format(max_traces=self.max_traces, **self.ports))
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [str(self.binary), "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"jaeger exited with code {self._proc.returncode}; log tail:\n{log_tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"jaeger not ready within {timeout:.0f}s; log tail:\n{log_tail(self.log_path)}"
                )
            time.sleep(0.2)

    def stop(self, timeout: float = 10) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            terminate(proc, timeout=timeout)

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """One trace from the query API (``/api/traces/<id>``), or None while it is unknown."""
        try:
            with urllib.request.urlopen(f"{self.ui_url}/api/traces/{trace_id}", timeout=5) as response:
                body: dict[str, list[dict[str, Any]]] = json.load(response)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
        data = body.get("data") or []
        return data[0] if data else None

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.ui_url}/api/services", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False


def render_trace(found: dict[str, Any]) -> str:
    """A trace as an indented tree, one span a line: start offset, duration, service, operation."""
    spans = found["spans"]
    service = {p: info["serviceName"] for p, info in found["processes"].items()}
    ids = {span["spanID"] for span in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans:
        parents = [
            r["spanID"] for r in span["references"] if r["refType"] == "CHILD_OF" and r["spanID"] in ids
        ]
        children.setdefault(parents[0] if parents else None, []).append(span)
    start = min(span["startTime"] for span in spans)
    lines = [
        f"trace {found['traceID']}: {len(spans)} spans",
        "   start ms    took ms  service        operation",
    ]

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s["startTime"]):
            lines.append(
                f"{(span['startTime'] - start) / 1000:10.1f} {span['duration'] / 1000:10.1f}  "
                f"{service[span['processID']]:<14} {'  ' * depth}{span['operationName']}"
            )
            walk(span["spanID"], depth + 1)

    walk(None, 0)
    return "\n".join(lines)

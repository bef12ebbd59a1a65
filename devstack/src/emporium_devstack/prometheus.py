"""Prometheus and Alertmanager for the local stack: Debian's binaries (``make bootstrap``
installs them), the project's rules and Alertmanager configuration from ``deploy/observability``.

    with Monitoring(root=..., work_dir=..., targets={"orders": "127.0.0.1:8003", ...}) as m:
        m.prometheus_url      # http://127.0.0.1:9090 (a free port when 9090 is taken)
        m.alertmanager_url    # http://127.0.0.1:9093 (likewise)

Every target is scraped as its own ``job`` (the service's name, which the alert rules and the
inhibition rule rely on); a service with several replicas is one job with one target (an
``instance``) per replica: ``{"orders": ["127.0.0.1:8003", "127.0.0.1:8013"]}``. Data lives in ``work_dir`` and is kept across runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from .ports import free_port, log_tail, port_open, terminate

DEFAULT_PROMETHEUS_PORT = 9090
DEFAULT_ALERTMANAGER_PORT = 9093
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        raise RuntimeError(f"{name} not found: `make bootstrap` installs it (Debian's prometheus packages)")
    return path


def _port(preferred: int | None, default: int, free_ports: bool) -> int:
    if preferred is not None:
        return preferred
    if free_ports or port_open("127.0.0.1", default):
        return free_port()
    return default


def _ready(url: str) -> bool:
    try:
        with _OPENER.open(f"{url}/-/ready", timeout=1) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


class Monitoring:
    """Alertmanager, then Prometheus (its rules loaded, alerting to that Alertmanager)."""

    def __init__(
        self,
        *,
        root: Path,
        work_dir: Path,
        targets: Mapping[str, str | Sequence[str]],
        log_dir: Path | None = None,
        free_ports: bool = False,
        prometheus_port: int | None = None,
        alertmanager_port: int | None = None,
        scrape_interval: str = "5s",
    ) -> None:
        self.root = Path(root)
        self.work_dir = Path(work_dir)
        self.log_dir = Path(log_dir) if log_dir is not None else self.work_dir
        self.targets = {job: [t] if isinstance(t, str) else list(t) for job, t in targets.items()}
        self.scrape_interval = scrape_interval
        self.prometheus_port = _port(prometheus_port, DEFAULT_PROMETHEUS_PORT, free_ports)
        self.alertmanager_port = _port(alertmanager_port, DEFAULT_ALERTMANAGER_PORT, free_ports)
        self.rules = sorted((self.root / "deploy/observability/prometheus/rules").glob("*.yml"))
        self.alertmanager_config = self.root / "deploy/observability/alertmanager/alertmanager.yml"
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://127.0.0.1:{self.alertmanager_port}"

    def __enter__(self) -> Monitoring:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def config(self) -> dict[str, object]:
        """prometheus.yml (written as JSON, which is YAML)."""
        return {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "rule_files": [str(path) for path in self.rules],
            "alerting": {
                "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{self.alertmanager_port}"]}]}]
            },
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": targets}]}
                for job, targets in self.targets.items()
            ],
        }

    def start(self, timeout: float = 60) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        config = self.work_dir / "prometheus.yml"
        config.write_text(json.dumps(self.config(), indent=2) + "\n")
        self._spawn(
            "alertmanager",
            _tool("prometheus-alertmanager"),
            f"--config.file={self.alertmanager_config}",
            f"--storage.path={self.work_dir / 'alertmanager'}",
            f"--web.listen-address=127.0.0.1:{self.alertmanager_port}",
            "--cluster.listen-address=",  # no HA gossip (it would take port 9094)
        )
        self._spawn(
            "prometheus",
            _tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={self.work_dir / 'prometheus'}",
            "--storage.tsdb.retention.time=2d",
            f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
        )
        deadline = time.monotonic() + timeout
        for name, url in (("alertmanager", self.alertmanager_url), ("prometheus", self.prometheus_url)):
            while not _ready(url):
                proc = self._procs[name]
                if proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    log = self.log_dir / f"{name}.log"
                    raise RuntimeError(f"{name} did not become ready at {url}; log tail:\n{log_tail(log)}")
                time.sleep(0.1)

    def _spawn(self, name: str, *command: str) -> None:
        log = open(self.log_dir / f"{name}.log", "ab")  # closed in stop()
        self._logs.append(log)
        self._procs[name] = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.work_dir
        )

    def stop(self, timeout: float = 10) -> None:
        """Prometheus first (it flushes its head block), then Alertmanager. Idempotent."""
        for name in ("prometheus", "alertmanager"):
            proc = self._procs.pop(name, None)
            if proc is not None:
                terminate(proc, timeout=timeout, group=True)
        for log in self._logs:
            log.close()
        self._logs.clear()

"""Free-port selection, port readiness checks, and stopping the processes behind the ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time


def free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, *, timeout: float = 0.5) -> bool:
    """True if a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(log_path: str | os.PathLike[str] | None, lines: int = 40) -> str:
    """Last `lines` lines of a log file, or a short placeholder."""
    if log_path is None:
        return "(no log file)"
    try:
        with open(log_path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return f"(log file {log_path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def wait_for_port(
    host: str,
    port: int,
    *,
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
    log_path: str | os.PathLike[str] | None = None,
) -> None:
    """Block until host:port accepts TCP connections.

    Raises RuntimeError (with the tail of `log_path`) if `process` exits first or
    `timeout` seconds pass.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"process {process.pid} exited with code {process.returncode} before "
                f"{host}:{port} opened; log tail:\n{log_tail(log_path)}"
            )
        if port_open(host, port):
            return
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"{host}:{port} did not open within {timeout:.0f}s; log tail:\n{log_tail(log_path)}"
            )
        time.sleep(0.1)


def terminate(proc: subprocess.Popen[bytes], *, timeout: float, group: bool = False) -> None:
    """SIGTERM (to its process group if ``group``), SIGKILL if still alive after ``timeout``
    seconds; a process that has already ended is left as it is."""
    if proc.poll() is not None:
        return

    def send(sig: signal.Signals) -> None:
        try:
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        except ProcessLookupError:  # ended in between
            pass

    send(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait()

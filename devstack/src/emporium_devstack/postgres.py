"""Run a throwaway PostgreSQL cluster on 127.0.0.1 with the system's PostgreSQL binaries."""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path
from urllib.parse import quote

from .ports import free_port, log_tail

PG_USER = "postgres"
# Unix socket paths are limited to 107 bytes; "/.s.PGSQL.65535" takes 15 of them.
_MAX_SOCKET_DIR = 90


def _is_root() -> bool:
    return os.geteuid() == 0


def find_pg_bindir() -> Path | None:
    """Directory with initdb/pg_ctl: `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if result.returncode == 0:
            bindir = Path(result.stdout.strip())
            # Debian's pg_config may come from libpq-dev without the server installed.
            if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
                return bindir
    candidates: list[tuple[int, Path]] = []
    for bindir in Path("/usr/lib/postgresql").glob("*/bin"):
        if re.fullmatch(r"\d+", bindir.parent.name) and (bindir / "initdb").exists():
            candidates.append((int(bindir.parent.name), bindir))
    if not candidates:
        return None
    return max(candidates)[1]


def _apt_install(packages: list[str]) -> None:
    if not _is_root():
        raise RuntimeError(
            f"missing system packages {packages}; not root, so install them yourself: "
            f"sudo apt-get update && sudo apt-get install -y {' '.join(packages)}"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", *packages]):
        result = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-4000:]}")


def install_postgres() -> Path:
    """Install the `postgresql` Debian package if its binaries are missing (root only)."""
    bindir = find_pg_bindir()
    if bindir is None:
        _apt_install(["postgresql"])
        bindir = find_pg_bindir()
    if bindir is None:
        raise RuntimeError("postgresql installed but no initdb found under /usr/lib/postgresql/*/bin")
    return bindir


def ensure_system_packages() -> None:
    """Install postgresql and redis-server with apt-get when missing (root only, else RuntimeError)."""
    missing: list[str] = []
    if find_pg_bindir() is None:
        missing.append("postgresql")
    if shutil.which("redis-server") is None and not Path("/usr/bin/redis-server").exists():
        missing.append("redis-server")
    if missing:
        _apt_install(missing)


def _ensure_traversable(path: Path, uid: int, gid: int) -> None:
    """Make every ancestor of `path` searchable by uid/gid, adding o+x where needed.

    Decision: o+x (search only, no listing) is the smallest change that lets the postgres user
    reach a data dir under root-owned folders such as /tmp/pytest-of-root (mode 0700).
    """
    for parent in path.parents:
        st = parent.stat()
        if st.st_uid == uid and st.st_mode & stat.S_IXUSR:
            continue
        if st.st_gid == gid and st.st_mode & stat.S_IXGRP:
            continue
        if st.st_mode & stat.S_IXOTH:
            continue
        os.chmod(parent, st.st_mode | stat.S_IXOTH)


class PostgresCluster:
    """A PostgreSQL cluster in `data_dir`, listening on 127.0.0.1:`port` with trust auth.

    As root, server programs run as the `postgres` user via runuser and the data dir is owned
    by it; ancestors of the data dir get o+x if `postgres` could not traverse them.
    """

    def __init__(
        self,
        *,
        data_dir: Path,
        port: int | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.log_path = (
            Path(log_path).resolve() if log_path else self.data_dir.parent / f"{self.data_dir.name}.log"
        )
        self._fixed_port = port is not None
        self.port: int | None = port
        self._bindir: Path | None = None

    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            bindir = find_pg_bindir()
            if bindir is None:
                if not _is_root():
                    raise RuntimeError(
                        "PostgreSQL server binaries not found; install them: "
                        "sudo apt-get update && sudo apt-get install -y postgresql"
                    )
                bindir = install_postgres()
            self._bindir = bindir
        return self._bindir

    @property
    def pid(self) -> int | None:
        """Postmaster pid from postmaster.pid, or None if not running."""
        pidfile = self.data_dir / "postmaster.pid"
        try:
            first = pidfile.read_text().splitlines()[0]
        except (FileNotFoundError, IndexError):
            return None
        return int(first)

    @property
    def running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        return self._pg_ctl("status", check=False).returncode == 0

    def __enter__(self) -> PostgresCluster:
        self.init()
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def init(self) -> bool:
        """Run initdb unless the data dir already holds a cluster; True if it ran."""
        if (self.data_dir / "PG_VERSION").exists():
            return False
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if any(self.data_dir.iterdir()):
            raise RuntimeError(f"{self.data_dir} is not empty and holds no cluster")
        self._prepare_ownership()
        result = self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-A",
                "trust",
                "-U",
                PG_USER,
                "--no-sync",
                "-E",
                "UTF8",
                # Fixed locale so results do not depend on the caller's LANG.
                "--locale=C.UTF-8",
            ]
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stdout[-4000:]}")
        return True

    def start(self, timeout: float = 30, *, fast: bool = False) -> None:
        """Start the server and wait until it accepts connections.

        fast=True turns off fsync, synchronous_commit and full_page_writes: for tests only,
        a crash of the machine (not of postgres) can then corrupt the cluster.
        """
        if not (self.data_dir / "PG_VERSION").exists():
            self.init()
        if self.running:
            return
        self._prepare_ownership()
        attempts = 3
        for attempt in range(1, attempts + 1):
            if self.port is None:
                self.port = free_port()
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            opts = [
                "-p",
                str(self.port),
                "-k",
                self._socket_dir(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=200",
            ]
            if fast:
                opts += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
            # pg_ctl passes -o through a shell, hence the quoting.
            result = self._pg_ctl(
                "start",
                "-w",
                "-t",
                str(int(timeout)),
                "-l",
                str(self.log_path),
                "-o",
                " ".join(shlex.quote(o) for o in opts),
                check=False,
            )
            if result.returncode == 0:
                # The server is daemonized; make sure it does not outlive this interpreter.
                atexit.register(self.kill)
                return
            new_log = self._log_since(log_start)
            if "Address already in use" in new_log and not self._fixed_port and attempt < attempts:
                self.port = None
                continue
            raise RuntimeError(
                f"pg_ctl start failed ({result.returncode}):\n{result.stdout[-2000:]}\n"
                f"log tail:\n{log_tail(self.log_path)}"
            )

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """pg_ctl stop -m <mode> (smart|fast|immediate); no-op if not running."""
        atexit.unregister(self.kill)
        if not self.running:
            return
        result = self._pg_ctl("stop", "-w", "-t", str(int(timeout)), "-m", mode, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl stop failed ({result.returncode}):\n{result.stdout[-2000:]}")

    def kill(self) -> None:
        """Immediate shutdown (no checkpoint; crash recovery runs on next start)."""
        self.stop(mode="immediate")

    def psql(self, sql: str, *, db: str = "postgres", variables: dict[str, str] | None = None) -> str:
        """Run a psql script (stdin) as superuser over TCP; returns stdout, raises on error."""
        cmd = [
            str(self.bindir / "psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            str(self._require_port()),
            "-U",
            PG_USER,
            "-d",
            db,
        ]
        for key, value in (variables or {}).items():
            cmd += ["-v", f"{key}={value}"]
        result = subprocess.run(cmd, input=sql, capture_output=True, text=True, cwd="/")
        if result.returncode != 0:
            raise RuntimeError(f"psql failed ({result.returncode}):\n{result.stderr[-4000:]}")
        return result.stdout

    def ensure_database(self, name: str, owner: str, password: str) -> None:
        """Create (or update the password of) login role `owner` and database `name` owned by it."""
        # psql's :'var' quoting plus format(%I/%L) keeps names and password safely quoted.
        script = """
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'owner', :'password')
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'owner') \\gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'owner', :'password') \\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'dbname', :'owner')
  WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'dbname') \\gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'dbname', :'owner') \\gexec
"""
        # No schema grants needed: since PG 15 schema public is owned by pg_database_owner.
        self.psql(script, variables={"owner": owner, "password": password, "dbname": name})

    def url(self, db: str, user: str, password: str) -> str:
        """SQLAlchemy URL for the psycopg (v3) driver."""
        return (
            f"postgresql+psycopg://{quote(user, safe='')}:{quote(password, safe='')}"
            f"@127.0.0.1:{self._require_port()}/{quote(db, safe='')}"
        )

    # internals

    def _require_port(self) -> int:
        if self.port is None:
            raise RuntimeError("postgres port not chosen yet; call start() first")
        return self.port

    def _socket_dir(self) -> str:
        # The data dir (owned by the server user) holds the socket; an over-long path would make
        # the server fail, so Unix sockets are then disabled (clients use TCP anyway).
        return str(self.data_dir) if len(str(self.data_dir)) <= _MAX_SOCKET_DIR else ""

    def _prepare_ownership(self) -> None:
        if not _is_root():
            return
        pw = pwd.getpwnam(PG_USER)
        _ensure_traversable(self.data_dir, pw.pw_uid, pw.pw_gid)
        _ensure_traversable(self.log_path, pw.pw_uid, pw.pw_gid)
        os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.data_dir, 0o700)
        # pg_ctl -l opens the log as the server user.
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.touch(exist_ok=True)
        os.chown(self.log_path, pw.pw_uid, pw.pw_gid)

    def _run(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        if _is_root():
            cmd = ["runuser", "-u", PG_USER, "--", *cmd]
        # cwd "/" so the server user is never left in an unreadable directory (e.g. /root).
        return subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd="/",
        )

    def _pg_ctl(self, action: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = self._run([str(self.bindir / "pg_ctl"), action, "-D", str(self.data_dir), *args])
        if check and result.returncode != 0:
            raise RuntimeError(f"pg_ctl {action} failed ({result.returncode}):\n{result.stdout[-2000:]}")
        return result

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                return fh.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

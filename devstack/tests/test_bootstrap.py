"""The bootstrap on a plain Debian machine, run as a newcomer runs it.

Each test copies the project's tracked files into a temporary folder and runs
``devstack/bin/bootstrap`` there with an empty home directory and the distribution's own
directories first on PATH, so that only what the bootstrap itself installs is used. Package
downloads are shared with this machine's caches (uv's, pip's and Maven's), which keeps the test
fast without hiding any install step.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from emporium_devstack.testing import repo_root

SYSTEM_PYTHON = Path("/usr/bin/python3")


def _system_python_version() -> tuple[int, int] | None:
    if not SYSTEM_PYTHON.exists():
        return None
    out = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True, text=True
    ).stdout.split()
    return (int(out[0]), int(out[1])) if len(out) == 2 else None


SYSTEM_VERSION = _system_python_version()
ENSUREPIP = Path(f"/usr/lib/python{'.'.join(map(str, SYSTEM_VERSION or ()))}/ensurepip")

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux")
    or SYSTEM_VERSION is None
    or not (3, 11) <= SYSTEM_VERSION <= (3, 13),
    reason="needs a distribution's Python 3.11 to 3.13 at /usr/bin/python3 (Debian 12 and 13, Ubuntu 24.04)",
)


def _copy_project(dest: Path) -> Path:
    root = repo_root()
    files = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        source = root / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def _shared_caches() -> dict[str, str]:
    uv = os.environ.get("UV") or shutil.which("uv") or str(repo_root() / ".cache/tools/bin/uv")
    uv_cache = subprocess.run([uv, "cache", "dir"], check=True, capture_output=True, text=True).stdout
    home = Path.home()
    return {
        "UV_CACHE_DIR": uv_cache.strip(),
        "PIP_CACHE_DIR": str(home / ".cache" / "pip"),
        "MAVEN_OPTS": f"-Dmaven.repo.local={home / '.m2' / 'repository'}",
    }


# What this test process has that a newcomer's shell would not: the virtualenv pytest runs in,
# uv's own settings, and another Python's (pyenv) variables. The machine's own settings (its CA
# bundle, a proxy) stay, as they would for anyone logged in there.
_NOT_A_NEWCOMERS = ("VIRTUAL_ENV", "UV", "PYENV", "PYTHON", "CONDA", "PIP_REQUIRE_VIRTUALENV")


def _newcomer_env(home: Path, path: str) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    kept = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_A_NEWCOMERS)}
    return {**kept, "HOME": str(home), "PATH": path, **_shared_caches()}


def _workspace_packages(project: Path) -> dict[str, str]:
    """Import name -> member folder, for every workspace member (read, not listed by hand)."""
    members = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]
    found: dict[str, str] = {}
    for pattern in members:
        for member in sorted(project.glob(pattern)):
            for init in member.glob("src/*/__init__.py"):
                found[init.parent.name] = str(member.relative_to(project))
    return found


_ROOT_AND_UNSHARE = os.geteuid() == 0 and shutil.which("unshare") is not None


def _hidden_package(folder: Path) -> Path:
    """A package folder whose import fails, to lay over one the distribution has."""
    hidden = folder / "hidden-package"
    hidden.mkdir(exist_ok=True)
    (hidden / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    return hidden


def _hiding(mounts: dict[Path, Path], command: list[str]) -> list[str]:
    """``command`` in a private mount namespace where each key is covered by its value."""
    script = " && ".join(f"mount --bind {source} {target}" for target, source in mounts.items())
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "bash",
        "-c",
        f'{script} && exec "$@"',
        "-",
        *command,
    ]


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A folder under /tmp that any user can reach (pytest's own tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="emporium-bootstrap-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize(
    ("route", "installed_with"),
    [
        pytest.param("venv", f"a virtual environment of {SYSTEM_PYTHON}", id="venv"),
        pytest.param(
            "pip-target",
            f"pip install --target, with {SYSTEM_PYTHON}",
            id="pip-target-without-python3-venv",
            marks=pytest.mark.skipif(not _ROOT_AND_UNSHARE, reason="needs root and unshare"),
        ),
    ],
)
def test_the_bootstrap_makes_a_working_environment_on_the_distributions_python_with_an_empty_home(
    scratch: Path, route: str, installed_with: str
) -> None:
    project = _copy_project(scratch / "emporium")
    env = _newcomer_env(scratch / "home", "/usr/bin:/bin")
    command = ["devstack/bin/bootstrap"]
    if route == "pip-target":  # a Python without venv/ensurepip (no python3-venv), but with pip
        command = _hiding({ENSUREPIP: _hidden_package(scratch)}, command)

    first = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"into .cache/tools ({installed_with})" in first.stdout, first.stdout
    assert f"({SYSTEM_PYTHON}; set UV_PYTHON" in first.stdout, first.stdout
    assert (project / ".cache/tools/bin/uv").exists() and not (project / ".cache/tools/uv.partial").exists()
    assert not any((scratch / "home").iterdir()), "the bootstrap wrote into the home directory"

    packages = _workspace_packages(project)
    assert {"emporium_events", "emporium_kit", "emporium_devstack", "orders", "gateway"} <= set(packages)
    probe = (
        "import importlib, json, sys; "
        f"names = {sorted(packages)!r}; "
        "print(json.dumps({'base_prefix': sys.base_prefix, 'version': list(sys.version_info[:2]), "
        "'files': {n: importlib.import_module(n).__file__ for n in names}}))"
    )
    result = subprocess.run(
        [str(project / ".venv/bin/python"), "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["base_prefix"] == "/usr" and tuple(seen["version"]) == SYSTEM_VERSION
    for name, member in packages.items():
        assert seen["files"][name].startswith(str(project / member)), (name, seen["files"][name])
    assert any((project / ".cache").glob("kafka-*/libs/kafka_2.13-*.jar")), "no Kafka broker jars"

    venv_made = (project / ".venv/pyvenv.cfg").stat().st_mtime_ns
    again = subprocess.run(
        ["devstack/bin/bootstrap"], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "using uv" in again.stdout and str(project / ".cache/tools/bin/uv") in again.stdout
    assert "installed" not in again.stdout
    assert (project / ".venv/pyvenv.cfg").stat().st_mtime_ns == venv_made, "the virtualenv was made anew"


@pytest.mark.skipif(not _ROOT_AND_UNSHARE, reason="needs root and unshare")
def test_a_user_without_root_is_told_every_missing_system_package_at_once_and_nothing_is_installed(
    scratch: Path,
) -> None:
    project = _copy_project(scratch / "emporium")
    # A PATH with the distribution's commands but no Java, Maven, PostgreSQL, Prometheus's tools
    # or uv; the Python without venv/ensurepip or pip (as on a minimal Debian).
    bin_dir = scratch / "bin"
    bin_dir.mkdir()
    absent = {"java", "mvn", "uv", "uvx", "promtool", "amtool"}
    for tool in Path("/usr/bin").iterdir():
        if tool.name not in absent and not tool.name.startswith(("pg_", "pip")):
            (bin_dir / tool.name).symlink_to(tool)
    hidden_package = _hidden_package(scratch)
    empty = scratch / "empty"
    empty.mkdir()
    mounts = {Path("/usr/lib/postgresql"): empty}
    for package in (ENSUREPIP, Path("/usr/lib/python3/dist-packages/pip")):
        if package.is_dir():
            mounts[package] = hidden_package
    home = scratch / "home"
    home.mkdir()
    subprocess.run(["chown", "-R", "nobody:nogroup", str(project), str(home)], check=True)
    env_args = [f"HOME={home}", f"PATH={bin_dir}", "LANG=C.UTF-8"]

    result = subprocess.run(
        _hiding(mounts, ["runuser", "-u", "nobody", "--", "env", "-i", *env_args, "devstack/bin/bootstrap"]),
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.count("missing system packages") == 1, result.stderr
    assert (
        "sudo apt-get update && sudo apt-get install -y --no-install-recommends "
        "python3-venv postgresql default-jre-headless maven prometheus prometheus-alertmanager"
        in result.stderr
    ), result.stderr
    assert not (project / ".venv").exists() and not (project / ".cache").exists()

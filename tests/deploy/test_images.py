"""Each image's recipe, proven without a Docker engine.

For every service and the gateway, the builder stage of its Dockerfile is *run*: its ``COPY``
lines copy from the repository (minus ``.dockerignore``) into a fresh build folder standing for
``/src``, its ``ENV`` lines are applied, and its ``RUN uv sync ...`` lines execute as written,
into ``<tmp>/venv-<name>`` standing for ``/app/.venv``. A Dockerfile that copies too little, or a
package that needs a file outside ``libs/`` and its own folder, fails here as it would in
``docker build``. Then, from a working directory outside the repository (nothing resolves from
the checkout), the runtime stage's entrypoint runs ``migrate`` against a fresh database of the
test PostgreSQL and ``serve`` against it and the test Kafka, until ``/readyz`` answers 200, and
the image's ``HEALTHCHECK`` command passes. The gateway also runs ``seed-admin``, and the admin
it made logs in.

What Docker itself would add (the base image, the non-root user, file ownership) is checked by
reading the Dockerfile: hadolint (``make lint-docker``) and the contract test below.
"""

from __future__ import annotations

import concurrent.futures
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from settings_env import problems

from emporium_devstack.ports import free_port
from emporium_devstack.stack import SERVICES, ServiceProcess, http_status
from emporium_devstack.testing import repo_root
from emporium_kit import migrations

ROOT = repo_root()
FOLDERS: dict[str, str] = {name: f"services/{name}" for name in SERVICES} | {"gateway": "gateway"}
NAMES = tuple(FOLDERS)
# Importable top-level packages of the workspace: an image holds its own and the shared libraries.
WORKSPACE_PACKAGES = (*NAMES, "emporium_events", "emporium_kit", "emporium_devstack")
SHARED = ("emporium_events", "emporium_kit")
VENV_IN_IMAGE = "/app/.venv"
IMAGE_PORT = "8080"
ADMIN_EMAIL = "admin@images.test"
ADMIN_PASSWORD = "images-test-password"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# -- the Dockerfile, read ------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for args in self.all("ENV"):
            out |= env_pairs(args)
        return out


def env_pairs(args: str) -> dict[str, str]:
    """``ENV A=1 B=2`` as a dict (the legacy ``ENV A 1`` form is refused)."""
    out: dict[str, str] = {}
    for pair in shlex.split(args):
        key, sep, value = pair.partition("=")
        assert sep, f"ENV {args!r}: write ENV KEY=value"
        out[key] = value
    return out


def dockerfile(name: str) -> Path:
    return ROOT / FOLDERS[name] / "Dockerfile"


def parse(path: Path) -> list[Stage]:
    """Stages of a Dockerfile: instructions with continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment lines, inside a continued instruction too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{path}: the last instruction ends with a line continuation"
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), " ".join(args.split())
        if keyword == "FROM":
            base, _, alias = args.partition(" AS ")
            stages.append(Stage(base=base.strip(), name=alias.strip() or None))
        else:
            assert stages, f"{path}: {keyword} before the first FROM"
            stages[-1].instructions.append((keyword, args))
    return stages


def stage(stages: list[Stage], name: str) -> Stage:
    found = [s for s in stages if s.name == name]
    assert found, f"no stage named {name!r}"
    return found[0]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def uv_argv(args: str) -> list[str]:
    """A builder ``RUN`` line as argv, BuildKit's ``--mount`` options removed."""
    argv = [a for a in shlex.split(args) if not a.startswith("--mount=")]
    assert argv and argv[0] == "uv", f"RUN {args!r}: the builder stage runs only uv"
    return argv


def uv_commands(builder: Stage) -> list[list[str]]:
    return [uv_argv(args) for args in builder.all("RUN")]


def package_sync(name: str) -> list[str]:
    return ["uv", "sync", "--frozen", "--no-dev", "--no-editable", "--package", name]


# -- the builder stage, run ----------------------------------------------------------------------


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "exceptions (!) are not read by this test"
    return patterns


def ignored(rel: str, patterns: list[str]) -> bool:
    """Docker's rule, as far as our .dockerignore uses it: ``**/x`` at any depth, else from the root."""
    parts = rel.split("/")
    for pattern in patterns:
        if pattern.startswith("**/"):
            tail = pattern[3:]
            if any(fnmatch.fnmatchcase("/".join(parts[i:]), tail) for i in range(len(parts))):
                return True
        elif fnmatch.fnmatchcase(rel, pattern.rstrip("/")):
            return True
    return False


def copy_into(src_rel: str, dest: Path, *, into: bool, patterns: list[str]) -> None:
    """``COPY src dest`` from the build context (the repository root, minus .dockerignore); `into`:
    dest ends with ``/`` (a file lands inside it; a folder's contents are copied either way)."""
    source = ROOT / src_rel
    rel = src_rel.rstrip("/")
    assert rel not in ("", ".") and not ignored(rel, patterns), f"COPY {src_rel}: excluded from the context"
    assert source.exists(), f"COPY {src_rel}: not in the build context"
    if source.is_dir():

        def skip(directory: str, names: list[str]) -> set[str]:
            base = Path(directory).relative_to(ROOT).as_posix()
            return {n for n in names if ignored(f"{base}/{n}", patterns)}

        shutil.copytree(source, dest, ignore=skip, dirs_exist_ok=True)
    else:
        target = dest / source.name if into or dest.is_dir() else dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment without anything that points at the checkout's own venv or sources."""
    drop = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT", "PYTEST_CURRENT_TEST"}
    return {k: v for k, v in os.environ.items() if k not in drop} | extra


@dataclass
class Image:
    name: str
    venv: Path
    build_log: str = ""
    error: str | None = None

    @property
    def runtime(self) -> Stage:
        return parse(dockerfile(self.name))[-1]

    def runtime_env(self, home: Path) -> dict[str, str]:
        """The runtime stage's ENV, with the image's venv path mapped to ours; nothing else inherited."""
        base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
        env = dict(base)
        for key, value in self.runtime.env().items():
            value = value.replace(VENV_IN_IMAGE, str(self.venv)).replace("$PATH", base["PATH"])
            env[key] = value
        return env

    def entrypoint(self, env: dict[str, str]) -> list[str]:
        argv = exec_form(self.runtime.all("ENTRYPOINT")[-1])
        found = shutil.which(argv[0], path=env["PATH"])
        assert found, f"{argv[0]} is not on the image's PATH"
        return [found, *argv[1:]]


def build(name: str, work: Path) -> Image:
    """Run the Dockerfile's builder stage here: its COPY, ENV and RUN lines, in order."""
    image = Image(name=name, venv=work / f"venv-{name}")
    context = work / f"build-{name}"  # stands for the builder's WORKDIR /src
    context.mkdir()
    patterns = dockerignore()
    # The image's interpreter is CPython 3.11 (python:3.11.x-slim-bookworm); pick the same here.
    env = clean_env(UV_PYTHON="3.11")
    logs: list[str] = []
    try:
        builder = stage(parse(dockerfile(name)), "builder")
        for keyword, args in builder.instructions:
            if keyword == "COPY" and args.startswith("--from="):
                continue  # the uv binary: the one on our PATH stands in for it
            if keyword == "COPY":
                *sources, dest = shlex.split(args)
                assert not dest.startswith("/"), f"COPY {args!r}: copy relative to WORKDIR /src"
                into = dest.endswith("/") or len(sources) > 1
                for source in sources:
                    copy_into(source, context / dest, into=into, patterns=patterns)
            elif keyword == "ENV":
                for key, value in env_pairs(args).items():
                    env[key] = str(image.venv) if key == "UV_PROJECT_ENVIRONMENT" else value
            elif keyword == "WORKDIR":
                assert args == "/src", "the builder's sources live in /src (this test maps it)"
            elif keyword == "RUN":
                argv = uv_argv(args)
                result = subprocess.run(
                    argv, cwd=context, env=env, capture_output=True, text=True, timeout=300, check=False
                )
                logs.append(f"$ {shlex.join(argv)}\n{result.stdout}{result.stderr}")
                assert result.returncode == 0, f"`{shlex.join(argv)}` failed:\n{result.stderr[-3000:]}"
            else:
                raise AssertionError(f"{keyword} in the builder stage: teach test_images.py to run it")
        assert env.get("UV_PROJECT_ENVIRONMENT") == str(image.venv), (
            "the builder must set UV_PROJECT_ENVIRONMENT"
        )
    except AssertionError as exc:
        image.error = str(exc)
    image.build_log = "\n".join(logs)
    return image


class Images(dict[str, Image]):
    """Each image built on first use (``-k orders`` builds one), all at once for the running system."""

    def __init__(self, work: Path) -> None:
        super().__init__()
        self.work = work

    def __missing__(self, name: str) -> Image:
        self[name] = build(name, self.work)
        return self[name]

    def build_all(self) -> None:
        missing = [name for name in NAMES if name not in self]
        # Two at a time: uv's installs are mostly I/O, and the machine may have only two cores.
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            for name, image in zip(missing, pool.map(lambda n: build(n, self.work), missing), strict=True):
                self[name] = image


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    return Images(tmp_path_factory.mktemp("images"))


def built(images: dict[str, Image], name: str) -> Image:
    image = images[name]
    if image.error is not None:
        pytest.fail(f"{name}: the Dockerfile's builder stage failed: {image.error}", pytrace=False)
    return image


# -- the installed packages, run -----------------------------------------------------------------


@dataclass
class Running:
    outside: Path  # a working directory outside the repository
    database_urls: dict[str, str] = field(default_factory=dict)
    steps: dict[str, list[str]] = field(default_factory=dict)  # name -> failures, in order
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    envs: dict[str, dict[str, str]] = field(default_factory=dict)


def settings_for(name: str, *, database_url: str, kafka: str, urls: dict[str, str]) -> dict[str, str]:
    """What a deployment sets for `name` (tests/deploy/settings_env checks it is exactly that)."""
    p = name.upper()
    env = {f"{p}_DATABASE_URL": database_url, f"{p}_HOST": "127.0.0.1", f"{p}_LOG_LEVEL": "WARNING"}
    if name == "gateway":
        env |= {f"GATEWAY_{svc.upper()}_URL": urls[svc] for svc in SERVICES}
        env |= {
            "GATEWAY_JWT_SECRET": "images-test-signing-key-" + "x" * 32,
            "GATEWAY_ADMIN_EMAIL": ADMIN_EMAIL,
            "GATEWAY_ADMIN_PASSWORD": ADMIN_PASSWORD,
        }
        return env
    env[f"{p}_KAFKA_BOOTSTRAP"] = kafka
    if name == "orders":
        env["ORDERS_CATALOG_URL"] = urls["catalog"]
    if name == "notifications":
        # Readiness does not depend on the mail server; a closed port is enough to start.
        env |= {"NOTIFICATIONS_SMTP_HOST": "127.0.0.1", "NOTIFICATIONS_SMTP_PORT": str(free_port())}
    return env


def start(name: str, image: Image, running: Running, commands: list[str]) -> None:
    """Run the one-off commands (migrate, seed-admin), then serve until /readyz is 200."""
    failures = running.steps.setdefault(name, [])
    env = running.envs[name]
    try:
        argv = image.entrypoint(env)
    except AssertionError as exc:
        failures.append(str(exc))
        return
    for command in commands:
        try:
            result = subprocess.run(
                [*argv, command],
                cwd=running.outside,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=120,
                check=False,
            )
        except subprocess.TimeoutExpired:
            failures.append(f"`{name} {command}` did not finish within 120 s")
            return
        if result.returncode != 0:
            failures.append(f"`{name} {command}` exited {result.returncode}:\n{result.stdout[-3000:]}")
            return
    port = int(env[f"{name.upper()}_PORT"])
    process = ServiceProcess(
        name,
        cmd=[*argv, *exec_form(image.runtime.all("CMD")[-1])],
        env=env,
        cwd=running.outside,
        port=port,
        log_path=running.outside / f"{name}.log",
        echo=False,
    )
    running.processes[name] = process
    process.start()
    try:
        process.wait_ready(timeout=90)
    except RuntimeError as exc:
        failures.append(f"`{name} serve`: {exc}")


@pytest.fixture(scope="module")
def running(
    images: Images, tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, databases
) -> Iterator[Running]:
    """The five services, then the gateway, each from its own installed env, cwd outside the repo."""
    images.build_all()
    outside = tmp_path_factory.mktemp("outside")
    assert ROOT not in outside.resolve().parents
    state = Running(outside=outside)
    ports = {name: free_port() for name in NAMES}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    for name in NAMES:
        state.database_urls[name] = databases.create(name)
        config = settings_for(name, database_url=state.database_urls[name], kafka=kafka_bootstrap, urls=urls)
        config[f"{name.upper()}_PORT"] = str(ports[name])  # the image's 8080, moved to a free port here
        state.envs[name] = images[name].runtime_env(home=outside) | config
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(SERVICES)) as pool:
            for future in [
                pool.submit(start, name, images[name], state, ["migrate"])
                for name in SERVICES
                if images[name].error is None
            ]:
                future.result()
        if images["gateway"].error is None:
            start("gateway", images["gateway"], state, ["migrate", "seed-admin"])
        yield state
    finally:
        for process in reversed(list(state.processes.values())):
            process.terminate()


def head_revision(name: str) -> str:
    """The newest revision of the package's migrations, as Alembic reads them."""
    head = ScriptDirectory(str(migrations.folder(name))).get_current_head()
    assert head is not None
    return head


def in_venv(image: Image, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = image.runtime_env(home=cwd)
    return subprocess.run(
        [str(image.venv / "bin" / "python"), "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_the_dockerfile_keeps_the_image_contract(name: str) -> None:
    path = dockerfile(name)
    assert f"docker build -f {FOLDERS[name]}/Dockerfile" in path.read_text(), (
        "say the context is the repo root"
    )
    stages = parse(path)
    for s in stages:
        image, _, tag = s.base.rpartition(":")
        assert image and tag and tag != "latest" and "$" not in s.base, f"FROM {s.base}: pin a tag"
    builder, runtime = stage(stages, "builder"), stages[-1]
    assert builder.base == runtime.base, "the venv links to the builder's interpreter: same base image"
    assert runtime.base.startswith("python:3.11.") and runtime.base.endswith("-slim-bookworm")

    # The last uv line installs exactly this package, as tests/deploy runs it (and nothing else).
    syncs = uv_commands(builder)
    assert syncs[-1] == package_sync(name), (
        f"the builder's last RUN must be `{shlex.join(package_sync(name))}`"
    )
    assert all(argv[: len(package_sync(name))] == package_sync(name) for argv in syncs)
    env = builder.env()
    assert env["UV_PROJECT_ENVIRONMENT"] == VENV_IN_IMAGE
    assert env["UV_COMPILE_BYTECODE"] == "1" and env["UV_LINK_MODE"] == "copy"
    copies = runtime.all("COPY")
    assert copies == [f"--from=builder {VENV_IN_IMAGE} {VENV_IN_IMAGE}"], "the runtime holds the venv only"

    p = name.upper()
    runtime_env = runtime.env()
    assert runtime_env["PATH"].startswith(f"{VENV_IN_IMAGE}/bin:")
    assert runtime_env[f"{p}_HOST"] == "0.0.0.0" and runtime_env[f"{p}_PORT"] == IMAGE_PORT
    assert runtime.all("EXPOSE") == [IMAGE_PORT]
    (user,) = runtime.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and (not gid or gid.isdigit()), "USER: a numeric, non-root uid"
    assert exec_form(runtime.all("ENTRYPOINT")[-1]) == [name]
    assert exec_form(runtime.all("CMD")[-1]) == ["serve"]
    (healthcheck,) = runtime.all("HEALTHCHECK")
    assert f"http://127.0.0.1:{IMAGE_PORT}/healthz" in healthcheck

    labels = " ".join(runtime.all("LABEL"))
    for key in ("title", "description", "source", "licenses", "version"):
        assert f"org.opencontainers.image.{key}=" in labels, f"OCI label {key} missing"
    project = tomllib.loads((ROOT / FOLDERS[name] / "pyproject.toml").read_text())["project"]
    args = dict(a.partition("=")[::2] for a in runtime.all("ARG"))
    assert args.get("VERSION") == project["version"], "the image's default version is the package's"
    assert project["scripts"][name] == f"{name}.__main__:main", (
        "ENTRYPOINT names the package's console script"
    )


def test_every_image_pins_the_same_uv_and_python() -> None:
    bases = {name: tuple(s.base for s in parse(dockerfile(name))) for name in NAMES}
    assert len(set(bases.values())) == 1, bases
    uv_image = bases[NAMES[0]][0]
    assert re.fullmatch(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", uv_image), uv_image


def test_the_build_context_leaves_out_caches_and_checkouts() -> None:
    patterns = dockerignore()
    for rel in (
        ".git",
        ".venv",
        ".cache",
        "bench/results",
        "services/orders/src/orders/__pycache__",
        "libs/kit/src/emporium_kit/x.pyc",
        "services/orders/.venv",
        "gateway/.pytest_cache",
    ):
        assert ignored(rel, patterns), f"{rel} would be sent to the Docker daemon"
    for rel in (
        "uv.lock",
        "pyproject.toml",
        "libs/kit/src/emporium_kit/migrations.py",
        "services/orders/src/orders/migrations/script.py.mako",
    ):
        assert not ignored(rel, patterns), f"{rel} is needed by the images"


@pytest.mark.parametrize("name", NAMES)
def test_the_builder_stage_installs_the_package_and_nothing_of_the_others(
    name: str, images: dict[str, Image], tmp_path: Path
) -> None:
    image = built(images, name)
    probe = (
        "import importlib.util, json; "
        f"print(json.dumps({{n: (s.origin if (s := importlib.util.find_spec(n)) else None) for n in {WORKSPACE_PACKAGES!r}}}))"
    )
    result = in_venv(image, probe, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    origins: dict[str, str | None] = json.loads(result.stdout)
    site = image.venv / "lib"
    for package in (name, *SHARED):
        origin = origins[package]
        assert origin is not None, f"{name}'s image cannot import {package}"
        assert Path(origin).is_relative_to(site), f"{package} resolves from {origin}, not the installed wheel"
    others = sorted(p for p, origin in origins.items() if origin is not None and p not in (name, *SHARED))
    assert others == [], f"{name}'s image also holds {others}"
    package = Path(str(origins[name])).parent
    for needed in ("migrations/env.py", "migrations/script.py.mako", "migrations/versions"):
        assert (package / needed).exists(), f"the {name} wheel lacks {needed}"
    assert not (image.venv / "bin" / "pytest").exists(), "dev dependencies were installed"


@pytest.mark.parametrize("name", NAMES)
def test_the_installed_package_migrates_and_serves_from_outside_the_repository(
    name: str, images: dict[str, Image], running: Running
) -> None:
    image = built(images, name)
    assert problems(name, {k for k in running.envs[name] if k.startswith(name.upper() + "_")}) == []
    failures = running.steps.get(name)
    assert failures == [], "\n".join(failures or [f"{name} was not started (see the services' results)"])

    engine = sa.create_engine(running.database_urls[name])
    try:
        with engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    finally:
        engine.dispose()
    assert versions == [head_revision(name)], f"{name} migrate left the schema at {versions}"

    process = running.processes[name]
    assert http_status(process.url + "/readyz") == 200, process.tail()
    # The image's own HEALTHCHECK command, pointed at the port this process listens on.
    (healthcheck,) = image.runtime.all("HEALTHCHECK")
    check = exec_form(healthcheck.split(" CMD ", 1)[1])
    check = [part.replace(f":{IMAGE_PORT}/", f":{process.port}/") for part in check]
    env = running.envs[name]
    result = subprocess.run(
        [shutil.which(check[0], path=env["PATH"]) or check[0], *check[1:]],
        cwd=running.outside,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, f"HEALTHCHECK failed: {result.stderr}"


def test_the_gateway_image_seeds_an_admin_who_can_log_in(running: Running) -> None:
    assert running.steps.get("gateway") == [], running.steps.get("gateway")
    gateway = running.processes["gateway"]
    body = json.dumps({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).encode()
    request = urllib.request.Request(
        gateway.url + "/api/v1/auth/login", data=body, headers={"Content-Type": "application/json"}
    )
    with _OPENER.open(request, timeout=10) as response:
        assert response.status == 200
        assert json.loads(response.read())["access_token"]

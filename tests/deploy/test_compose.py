"""docker-compose.yml, checked without a Docker engine: it follows the Compose Specification,
gives each process exactly the settings it reads, starts everything in an order that works,
mounts files that exist and wires the observability stack to the project's own rules,
dashboards and configurations. The PostgreSQL init script runs against a real PostgreSQL."""

from __future__ import annotations

import base64
import functools
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from settings_env import problems

from emporium_devstack.jaeger import JAEGER_VERSION
from emporium_devstack.postgres import PostgresCluster
from emporium_devstack.testing import cache_dir, repo_root

ROOT = repo_root()
COMPOSE_FILE = ROOT / "docker-compose.yml"
OBSERVABILITY = ROOT / "deploy" / "observability"
RULE_FILES = sorted((OBSERVABILITY / "prometheus" / "rules").glob("*.yml"))
INIT_SCRIPT = ROOT / "deploy" / "compose" / "postgres-init.sh"

SERVICES = ("catalog", "inventory", "orders", "payments", "notifications")
APPS = (*SERVICES, "gateway")
DOCKERFILES = {**{name: f"services/{name}/Dockerfile" for name in SERVICES}, "gateway": "gateway/Dockerfile"}
# One-shot jobs -> the application whose image and settings they use.
JOBS = {**{f"{app}-migrate": app for app in APPS}, "gateway-seed-admin": "gateway"}
JOB_COMMANDS = {**{f"{app}-migrate": ["migrate"] for app in APPS}, "gateway-seed-admin": ["seed-admin"]}
APP_PORT = 8080  # every Emporium image listens here
# Long-running services that cannot have a healthcheck, and why.
NO_HEALTHCHECK = {"otel-collector": "its image is FROM scratch: no shell or HTTP client to probe with"}


@functools.cache
def compose() -> dict[str, Any]:
    # safe_load resolves anchors, aliases and `<<` merge keys as Compose does.
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def service(name: str) -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"][name]
    return found


def long_running() -> list[str]:
    return [name for name in compose()["services"] if name not in JOBS]


_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str) -> str:
    """The value a fresh checkout runs with: each ``${VAR:-default}`` is its default.

    The caller's environment is ignored on purpose, so the checks do not depend on it."""

    def default(match: re.Match[str]) -> str:
        if match["op"] in (":-", "-"):
            return match["arg"]
        raise AssertionError(f"{match[0]} has no default: a fresh checkout could not start")

    return _VARIABLE.sub(default, value)


def environment(name: str) -> dict[str, str]:
    """A service's `environment`, mapping or list form, values as written (not interpolated)."""
    env = service(name).get("environment") or {}
    if isinstance(env, list):
        pairs = (item.partition("=") for item in env)
        return {key: value for key, _, value in pairs}
    return {key: "" if value is None else str(value) for key, value in env.items()}


def depends_on(name: str) -> dict[str, str]:
    """Dependency -> condition (the short list form means service_started)."""
    deps = service(name).get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {dep: spec.get("condition", "service_started") for dep, spec in deps.items()}


def bind_mounts(name: str) -> list[tuple[Path, PurePosixPath]]:
    """(host path, container path) of each bind mount from the repository."""
    mounts = []
    for volume in service(name).get("volumes") or []:
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            target = rest.split(":")[0]
            if not source.startswith((".", "/")):
                continue  # a named volume
        elif volume.get("type") == "bind":
            source, target = volume["source"], volume["target"]
        else:
            continue
        mounts.append(((COMPOSE_FILE.parent / source).resolve(), PurePosixPath(target)))
    return mounts


def host_path(name: str, container_path: str | PurePosixPath) -> Path:
    """The repository file that `container_path` is inside service `name`, through its mounts."""
    path = PurePosixPath(container_path)
    candidates = [
        (target, source) for source, target in bind_mounts(name) if path == target or target in path.parents
    ]
    assert candidates, f"{name}: nothing from the repository is mounted at {path}"
    target, source = max(candidates, key=lambda pair: len(pair[0].parts))  # the innermost mount
    return source / path.relative_to(target)


def flag(name: str, option: str) -> str:
    """The value of `--option=value` in a service's command."""
    values = [
        arg.split("=", 1)[1] for arg in service(name).get("command") or [] if arg.startswith(f"{option}=")
    ]
    assert len(values) == 1, f"{name}: expected one {option}=... in its command"
    return values[0]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# --- the file as a whole ------------------------------------------------------------------------


def test_the_compose_file_follows_the_compose_specification():
    tool = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(tool), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_file_defines_every_service_the_gateway_and_their_jobs():
    names = set(compose()["services"])
    assert set(APPS) | set(JOBS) <= names
    assert {"kafka", "postgres", "redis", "mailpit", "otel-collector", "jaeger"} <= names
    assert {"prometheus", "alertmanager", "grafana"} <= names


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*APPS, *JOBS])
def test_each_process_is_given_the_settings_it_reads_and_every_one_it_needs(name: str):
    app = JOBS.get(name, name)
    assert problems(app, set(environment(name))) == []


@pytest.mark.parametrize("app", APPS)
def test_each_app_listens_where_its_healthcheck_and_prometheus_look(app: str):
    env = environment(app)
    prefix = app.upper()
    assert (env[f"{prefix}_HOST"], env[f"{prefix}_PORT"]) == ("0.0.0.0", str(APP_PORT))
    probe = " ".join(service(app)["healthcheck"]["test"])
    assert f"http://127.0.0.1:{APP_PORT}/readyz" in probe


def test_each_database_url_names_its_own_database_and_role_with_the_password_postgres_creates_it_with():
    postgres_env = environment("postgres")
    for app in APPS:
        url = urlsplit(environment(app)[f"{app.upper()}_DATABASE_URL"])
        assert url.scheme == "postgresql+psycopg", app
        assert (url.hostname, url.port, url.path, url.username) == ("postgres", 5432, f"/{app}", app)
        # The same expression on both sides: the same default, overridden by the same variable.
        variable = f"{app.upper()}_DB_PASSWORD"
        assert postgres_env[variable].startswith(f"${{{variable}:-"), variable
        assert url.password == postgres_env[variable], app


def test_the_init_script_creates_a_database_for_exactly_the_apps_postgres_has_passwords_for():
    passwords = {
        key.removesuffix("_DB_PASSWORD").lower()
        for key in environment("postgres")
        if key.endswith("_DB_PASSWORD")
    }
    [names] = re.findall(r"^for name in ([a-z ]+); do$", INIT_SCRIPT.read_text(), flags=re.M)
    assert set(names.split()) == passwords == set(APPS)


def test_every_url_a_process_is_given_names_a_service_of_this_file_where_it_listens():
    ports = {app: APP_PORT for app in APPS} | {"otel-collector": 4318}
    for name in [*APPS, *JOBS]:
        for key, value in environment(name).items():
            is_http = key.endswith("_URL") and not key.endswith("_DATABASE_URL")
            if is_http or key == "OTEL_EXPORTER_OTLP_ENDPOINT":
                url = urlsplit(interpolate(value))
                assert url.scheme == "http" and url.hostname in ports, (name, key, value)
                assert url.port == ports[url.hostname], (name, key, value)
    assert environment("orders")["ORDERS_CATALOG_URL"] == f"http://catalog:{APP_PORT}"
    gateway = environment("gateway")
    assert {gateway[f"GATEWAY_{app.upper()}_URL"] for app in SERVICES} == {
        f"http://{app}:{APP_PORT}" for app in SERVICES
    }


def test_each_service_reaches_kafka_at_the_address_the_broker_advertises_and_mail_at_mailpit():
    advertised = environment("kafka")["KAFKA_ADVERTISED_LISTENERS"]
    addresses = {urlsplit(listener).netloc for listener in advertised.split(",")}
    for app in SERVICES:
        assert environment(app)[f"{app.upper()}_KAFKA_BOOTSTRAP"] in addresses, app
    notifications = environment("notifications")
    assert (notifications["NOTIFICATIONS_SMTP_HOST"], notifications["NOTIFICATIONS_SMTP_PORT"]) == (
        "mailpit",
        "1025",
    )


def test_kafka_is_one_combined_kraft_node_with_a_valid_cluster_id_and_its_log_on_a_volume():
    env = environment("kafka")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "CONTROLLER://:9093" in env["KAFKA_LISTENERS"].split(",")
    # Kafka's Uuid.fromString: base64url without padding, 16 bytes.
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16
    volumes = [v for v in service("kafka")["volumes"] if isinstance(v, str)]
    assert any(
        v.split(":")[1] == env["KAFKA_LOG_DIRS"] and v.split(":")[0] in compose()["volumes"] for v in volumes
    )


# --- start-up order -----------------------------------------------------------------------------


@pytest.mark.parametrize("app", APPS)
def test_each_app_starts_only_after_its_migration_job_succeeded(app: str):
    assert depends_on(app)[f"{app}-migrate"] == "service_completed_successfully"


def test_the_gateway_starts_after_the_admin_is_seeded_and_every_service_is_ready():
    deps = depends_on("gateway")
    assert deps["gateway-seed-admin"] == "service_completed_successfully"
    assert depends_on("gateway-seed-admin")["gateway-migrate"] == "service_completed_successfully"
    assert {app: deps[app] for app in SERVICES} == dict.fromkeys(SERVICES, "service_healthy")


@pytest.mark.parametrize("job", JOBS)
def test_each_job_runs_once_on_its_apps_image_after_postgres_is_healthy(job: str):
    spec, app = service(job), JOBS[job]
    assert spec["command"] == JOB_COMMANDS[job]
    assert spec["restart"] == "no"
    assert spec["image"] == service(app)["image"]
    assert "build" not in spec, "only the app builds its image, once; its jobs run it"
    assert "healthcheck" not in spec and "ports" not in spec
    assert depends_on(job)["postgres"] == "service_healthy"


def test_every_job_is_awaited_by_a_long_running_service_so_up_wait_succeeds():
    """`docker compose up --wait` counts a container that exited as failed unless a running
    service waits for it with service_completed_successfully (docker/compose#10596)."""
    awaited = {
        dep
        for name in long_running()
        for dep, condition in depends_on(name).items()
        if condition == "service_completed_successfully"
    }
    assert awaited == set(JOBS)


@pytest.mark.parametrize("app", SERVICES)
def test_each_service_starts_on_a_healthy_postgres_and_kafka(app: str):
    deps = depends_on(app)
    assert (deps["postgres"], deps["kafka"]) == ("service_healthy", "service_healthy")
    assert service(app)["command"] == ["serve"]


def test_every_dependency_can_reach_the_condition_it_is_waited_for():
    """service_healthy needs a healthcheck and service_completed_successfully a job, or
    `docker compose up` waits in vain or fails."""
    for name in compose()["services"]:
        for dep, condition in depends_on(name).items():
            assert dep in compose()["services"], (name, dep)
            if condition == "service_healthy":
                assert "test" in service(dep).get("healthcheck", {}), f"{name} waits for {dep}'s health"
            elif condition == "service_completed_successfully":
                assert dep in JOBS, f"{name} waits for {dep} to exit"
            else:
                assert condition == "service_started", (name, dep)


def test_every_long_running_service_has_a_healthcheck_and_restarts():
    for name in long_running():
        spec = service(name)
        assert spec.get("restart") == "unless-stopped", name
        if name in NO_HEALTHCHECK:
            assert "healthcheck" not in spec, f"{name} has a healthcheck now: drop it from NO_HEALTHCHECK"
            continue
        check = spec.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name


def test_postgres_is_probed_over_tcp_so_it_is_not_ready_while_its_init_scripts_run():
    probe = service("postgres")["healthcheck"]["test"]
    assert "pg_isready" in probe and probe[probe.index("-h") + 1] == "127.0.0.1"


# --- images -------------------------------------------------------------------------------------


def test_every_image_has_a_pinned_tag():
    for name, spec in compose()["services"].items():
        image = interpolate(spec.get("image", ""))
        assert image, f"{name} has no image name"
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and not tag.isdigit(), f"{name}: {image} is not pinned to a release"


@pytest.mark.parametrize("app", APPS)
def test_each_app_image_is_named_and_tagged_after_its_package(app: str):
    pyproject = tomllib.loads((ROOT / DOCKERFILES[app]).with_name("pyproject.toml").read_text())
    image = service(app)["image"]
    assert image == f"emporium/{app}:${{EMPORIUM_TAG:-{pyproject['project']['version']}}}"


@pytest.mark.parametrize("app", APPS)
def test_each_app_is_built_from_its_own_dockerfile_with_the_repository_as_context(app: str):
    build = service(app)["build"]
    assert build == {"context": ".", "dockerfile": DOCKERFILES[app]}
    # The images arrive with their own change: until then this fails, by design.
    assert (ROOT / build["dockerfile"]).is_file(), f"{build['dockerfile']} does not exist"


def test_only_the_apps_build_images():
    assert {name for name, spec in compose()["services"].items() if "build" in spec} == set(APPS)


def test_only_the_gateway_publishes_an_application_port_and_every_port_is_on_loopback():
    published = {name: spec["ports"] for name, spec in compose()["services"].items() if spec.get("ports")}
    assert [name for name in published if name in APPS or name in JOBS] == ["gateway"]
    assert published["gateway"] == [f"127.0.0.1:8000:{APP_PORT}"]
    for name, ports in published.items():
        for port in ports:
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)


# --- mounted files ------------------------------------------------------------------------------


def test_every_file_a_service_mounts_from_the_repository_exists():
    mounts = [(name, source) for name in compose()["services"] for source, _ in bind_mounts(name)]
    assert mounts
    for name, source in mounts:
        assert source.is_relative_to(ROOT), f"{name} mounts {source}, outside the repository"
        assert source.exists(), f"{name} mounts {rel(source)}, which does not exist"


def test_postgres_runs_the_init_script_which_is_executable():
    [(source, target)] = [
        m for m in bind_mounts("postgres") if m[1].parent == PurePosixPath("/docker-entrypoint-initdb.d")
    ]
    assert source == INIT_SCRIPT and target.suffix == ".sh"
    # Not executable, the image's entrypoint would source it into its own shell instead.
    assert os.access(INIT_SCRIPT, os.X_OK)


# --- Prometheus, Alertmanager, Grafana ---------------------------------------------------------


def prometheus_config() -> tuple[PurePosixPath, dict[str, Any]]:
    inside = PurePosixPath(flag("prometheus", "--config.file"))
    path = host_path("prometheus", inside)
    assert path == ROOT / "deploy" / "compose" / "prometheus.yml"
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    return inside, config


def test_prometheus_loads_the_projects_rule_files_inside_the_container():
    inside, config = prometheus_config()
    assert RULE_FILES
    loaded = []
    for pattern in config["rule_files"]:
        # Prometheus resolves rule_files relative to its config file, then through the mounts.
        rules_dir = host_path("prometheus", _normalize(inside.parent / pattern).parent)
        loaded += sorted(rules_dir.glob(PurePosixPath(pattern).name))
    assert [path.resolve() for path in loaded] == RULE_FILES


def _normalize(path: PurePosixPath) -> PurePosixPath:
    return PurePosixPath(os.path.normpath(str(path)))


def test_prometheus_scrapes_every_app_as_its_own_job_and_alerts_the_alertmanager():
    _, config = prometheus_config()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(APPS)
    for app, job in jobs.items():
        assert job.get("metrics_path", "/metrics") == "/metrics"
        assert [target for sc in job["static_configs"] for target in sc["targets"]] == [f"{app}:{APP_PORT}"]
    [manager] = config["alerting"]["alertmanagers"]
    assert [t for sc in manager["static_configs"] for t in sc["targets"]] == ["alertmanager:9093"]


def test_promtool_accepts_the_compose_prometheus_config_and_finds_the_rules():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (`make bootstrap` installs Debian's prometheus packages)")
    path = ROOT / "deploy" / "compose" / "prometheus.yml"
    result = subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=120
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in output, output


def test_alertmanager_runs_the_projects_configuration():
    config = host_path("alertmanager", flag("alertmanager", "--config.file"))
    assert config == OBSERVABILITY / "alertmanager" / "alertmanager.yml"


def test_grafana_is_provisioned_with_the_projects_datasource_and_dashboards():
    provisioning = host_path("grafana", "/etc/grafana/provisioning")
    assert provisioning == OBSERVABILITY / "grafana" / "provisioning"
    [provider] = yaml.safe_load((provisioning / "dashboards" / "emporium.yml").read_text())["providers"]
    dashboards = host_path("grafana", provider["options"]["path"])
    assert dashboards == OBSERVABILITY / "grafana" / "dashboards"
    assert sorted(dashboards.glob("*.json"))
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    url = urlsplit(source["url"])
    # Prometheus listens on its default port: nothing in its command moves it.
    assert (url.hostname, url.port) == ("prometheus", 9090)
    assert not any(arg.startswith("--web.listen-address") for arg in service("prometheus")["command"])


# --- the OpenTelemetry Collector ----------------------------------------------------------------


def collector_config() -> tuple[Path, dict[str, Any]]:
    path = host_path("otel-collector", flag("otel-collector", "--config"))
    assert path == ROOT / "deploy" / "compose" / "otel-collector.yaml"
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    return path, config


def test_the_collector_pipelines_use_only_components_it_defines_and_it_defines_only_what_they_use():
    _, config = collector_config()
    pipelines = config["service"]["pipelines"]
    assert pipelines
    for kind in ("receivers", "processors", "exporters"):
        used = {name for pipeline in pipelines.values() for name in pipeline.get(kind, [])}
        assert used == set(config.get(kind) or {}), kind
    assert set(config["service"].get("extensions", [])) == set(config.get("extensions") or {})
    for name, pipeline in pipelines.items():
        assert pipeline["receivers"] and pipeline["exporters"], name


def test_the_collector_receives_otlp_where_the_apps_send_it_and_forwards_traces_to_jaeger():
    _, config = collector_config()
    http = urlsplit("//" + config["receivers"]["otlp"]["protocols"]["http"]["endpoint"])
    sent_to = urlsplit(environment("orders")["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert (sent_to.hostname, sent_to.port) == ("otel-collector", http.port)
    [exporter] = config["service"]["pipelines"]["traces"]["exporters"]
    assert exporter.split("/")[0] == "otlp"  # OTLP/gRPC: Jaeger v2 receives it on 4317
    assert config["exporters"][exporter]["endpoint"] == "jaeger:4317"


def test_the_collector_config_validates_with_a_collector_build():
    """Jaeger v2 is a collector distribution on the same collector release as the pinned image
    (0.140); the local stack's build validates the file."""
    jaeger = cache_dir() / f"jaeger-{JAEGER_VERSION}" / "jaeger"
    if not jaeger.exists():
        pytest.skip(f"{rel(jaeger)} is not built (make run builds it)")
    path, _ = collector_config()
    result = subprocess.run(
        [str(jaeger), "validate", f"--config=file:{path}"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the PostgreSQL init script, for real -------------------------------------------------------


def _run_init_script(env: dict[str, str], bindir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(INIT_SCRIPT)],
        env={"PATH": f"{bindir}:{os.environ['PATH']}", "POSTGRES_USER": "postgres", **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )


def test_the_init_script_gives_each_app_its_own_database_and_role_and_no_one_else_access(tmp_path: Path):
    passwords = {app: f"{app}-p'w\"d" for app in APPS}  # quotes: psql must quote, not the script
    cluster = PostgresCluster(data_dir=tmp_path / "pg")
    cluster.init()
    # The superuser (the image's entrypoint, here the test) without a password; every other role
    # with its password, as the postgres image's pg_hba does for connections from the network.
    (cluster.data_dir / "pg_hba.conf").write_text(
        "host all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
    )
    cluster.start(fast=True)  # fsync off: CREATE DATABASE x 6 on a busy disk
    try:
        result = _run_init_script(
            {
                "PGHOST": "127.0.0.1",
                "PGPORT": str(cluster.port),
                **{f"{app.upper()}_DB_PASSWORD": password for app, password in passwords.items()},
            },
            cluster.bindir,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        rows = cluster.psql(
            "SELECT d.datname, r.rolname, r.rolcanlogin, a.rolpassword IS NOT NULL"
            " FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba JOIN pg_authid a ON a.oid = r.oid"
            " WHERE NOT d.datistemplate AND d.datname <> 'postgres' ORDER BY 1"
        )
        assert rows.split() == [f"{app}|{app}|t|t" for app in sorted(APPS)]

        def as_orders(database: str, sql: str, password: str = passwords["orders"]) -> tuple[int, str]:
            psql = [str(cluster.bindir / "psql"), "-X", "-q", "-h", "127.0.0.1", "-p", str(cluster.port)]
            done = subprocess.run(
                [*psql, "-U", "orders", "-d", database, "-c", sql],
                env={**os.environ, "PGPASSWORD": password},
                capture_output=True,
                text=True,
                timeout=30,
            )
            return done.returncode, done.stderr

        # The role logs in with exactly its password and may create its tables...
        assert as_orders("orders", "CREATE TABLE t (id int)") == (0, "")
        code, error = as_orders("orders", "SELECT 1", password="orders")
        assert code != 0 and "password authentication failed" in error, error
        # ...and may not even connect to another service's database.
        code, error = as_orders("payments", "SELECT 1")
        assert code != 0 and "permission denied" in error, error
    finally:
        cluster.stop()


def test_the_init_script_fails_when_a_password_is_not_given(tmp_path: Path):
    env = {f"{app.upper()}_DB_PASSWORD": "x" for app in APPS if app != "catalog"}
    result = _run_init_script({**env, "PGHOST": str(tmp_path / "nowhere")}, Path("/usr/bin"))
    assert result.returncode != 0
    assert "CATALOG_DB_PASSWORD is not set" in result.stderr

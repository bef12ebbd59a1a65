"""deploy/k8s: the base and every overlay render with kustomize, every built-in object passes
the Kubernetes schema, and the rendered objects keep the rules a reviewer would otherwise check
by eye: hardened workloads, a PDB and an HPA per Deployment, pinned images, no secret in git,
settings the processes actually read, the topics the code uses, and least-privilege traffic.

Each target is rendered once per session (``kubectl kustomize``, offline). Schemas are the ones
``kubernetes-validate`` ships, for Kubernetes 1.32 (the installed kubectl's version); it has none
for the operators' kinds, which are listed by name below so that a mistyped built-in kind cannot
pass as "an operator's".
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
import yaml
from settings_env import problems

from emporium_devstack.testing import repo_root
from emporium_events import topics
from emporium_kit.runtime import TOPIC_PARTITIONS

K8S = repo_root() / "deploy" / "k8s"
SECRETS_DOC = K8S / "SECRETS.md"
TARGETS = {"base": "base", "dev": "overlays/dev", "prod": "overlays/prod"}
OVERLAYS = ["dev", "prod"]
KUBERNETES_VERSION = "1.32"

SERVICES = ("catalog", "inventory", "orders", "payments", "notifications")
PROCESSES = (*SERVICES, "gateway")

# Kinds that only an operator's CRD defines; kubernetes-validate has no schema for them.
OPERATOR_KINDS = {
    "base": set(),
    "dev": set(),
    "prod": {"Kafka", "KafkaNodePool", "KafkaTopic", "Cluster", "ServiceMonitor"},
}
OPERATOR_GROUPS = ("kafka.strimzi.io/", "postgresql.cnpg.io/", "monitoring.coreos.com/")

# Secrets that no rendered object defines or makes an operator create: the platform creates them
# (SECRETS.md). In prod CloudNativePG creates `<cluster>-app` and cert-manager the Ingress's TLS
# Secret, both from objects in the render; in dev the database secrets are made by hand.
EXTERNAL_SECRETS = {
    "base": {"gateway-secrets", *(f"{p}-db-app" for p in PROCESSES), "emporium-gateway-tls"},
    "dev": {"gateway-secrets", *(f"{p}-db-app" for p in PROCESSES), "emporium-gateway-tls"},
    "prod": {"gateway-secrets"},
}

# Read from Secrets only to build <SVC>_DATABASE_URL by $(NAME) expansion, not settings.
EXPANSION_ONLY = {"DB_USER", "DB_PASSWORD", "DB_HOST", "DB_PORT", "DB_NAME"}

# Who calls whom over HTTP (port 8080), and nothing else.
CALLS = {("orders", "catalog"), *(("gateway", s) for s in SERVICES)}

INGRESS_NAMESPACE = "ingress-nginx"
# The step of components/migrations/kustomization.yaml that applies all but the workloads.
BEFORE_MIGRATIONS = ("app.kubernetes.io/component", {"server", "migration"})

Obj = dict[str, Any]


# --- rendering ---------------------------------------------------------------------------


@functools.cache
def render(target: str) -> tuple[Obj, ...]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: `kubectl kustomize` renders deploy/k8s")
    done = subprocess.run(
        ["kubectl", "kustomize", str(K8S / TARGETS[target])], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize {TARGETS[target]} failed:\n{done.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def of_kind(objs: tuple[Obj, ...], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def named(objs: tuple[Obj, ...], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in of_kind(objs, kind)}


def workloads(objs: tuple[Obj, ...]) -> list[Obj]:
    return [o for o in objs if o["kind"] in ("Deployment", "Job")]


def pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: Obj) -> list[Obj]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def process(workload: Obj) -> str:
    name: str = workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
    return name


def ident(workload: Obj) -> str:
    return f"{workload['kind']}/{workload['metadata']['name']}"


@pytest.fixture(params=list(TARGETS))
def target(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


# --- render and schema -------------------------------------------------------------------


def test_the_base_and_every_overlay_render_with_kubectl_kustomize(target):
    objs = render(target)
    assert {p for p in PROCESSES} == set(named(objs, "Deployment")), "one Deployment per process"
    for o in objs:
        assert o["metadata"].get("name"), f"an unnamed {o['kind']}"


def test_every_built_in_object_passes_kubernetes_validate_strict_and_only_operator_kinds_are_skipped(
    target, monkeypatch
):
    # kubernetes-validate re-reads its 1.3 MB definitions file for every object: read it once.
    utils = kubernetes_validate.utils
    monkeypatch.setattr(utils, "schema_contents", functools.cache(utils.schema_contents))
    failures, skipped = [], set()
    for o in render(target):
        try:
            kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            skipped.add(o["kind"])
            assert o["apiVersion"].startswith(OPERATOR_GROUPS), f"no schema for {o['apiVersion']} {o['kind']}"
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{o['kind']}/{o['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert not failures, "\n".join(failures)
    assert skipped == OPERATOR_KINDS[target]


# --- workloads ---------------------------------------------------------------------------


def test_every_deployment_probes_startup_and_readiness_on_readyz_and_liveness_on_healthz(target):
    for d in of_kind(render(target), "Deployment"):
        for c in pod_spec(d)["containers"]:
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            assert ports == {"http": 8080}, ident(d)
            probes = {
                kind: c[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")
            }
            assert {kind: (g["path"], g["port"]) for kind, g in probes.items()} == {
                "startupProbe": ("/readyz", "http"),
                "readinessProbe": ("/readyz", "http"),
                "livenessProbe": ("/healthz", "http"),
            }, ident(d)


def test_every_workload_container_has_cpu_and_memory_requests_and_limits(target):
    for w in workloads(render(target)):
        for c in containers(w):
            resources = c.get("resources", {})
            for bound in ("requests", "limits"):
                assert set(resources.get(bound, {})) >= {"cpu", "memory"}, f"{ident(w)} {c['name']} {bound}"


def test_every_workload_runs_non_root_read_only_without_capabilities_under_runtime_default_seccomp(target):
    for w in workloads(render(target)):
        spec = pod_spec(w)
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True and pod.get("runAsUser") == 10001, ident(w)
        assert pod.get("fsGroup") == 10001, ident(w)
        assert pod.get("seccompProfile") == {"type": "RuntimeDefault"}, ident(w)
        assert spec.get("automountServiceAccountToken") is False, ident(w)
        tmp_volumes = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for c in containers(w):
            sc = c.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, f"{ident(w)} {c['name']}"
            assert sc.get("readOnlyRootFilesystem") is True, f"{ident(w)} {c['name']}"
            assert sc.get("capabilities") == {"drop": ["ALL"]}, f"{ident(w)} {c['name']}"
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert mounts.get("/tmp") in tmp_volumes, f"{ident(w)} {c['name']}: /tmp is not an emptyDir"


def test_every_service_account_has_no_token_mounted(target):
    accounts = named(render(target), "ServiceAccount")
    for w in workloads(render(target)):
        account = accounts[pod_spec(w)["serviceAccountName"]]
        assert account.get("automountServiceAccountToken") is False, ident(w)


def test_every_image_is_pinned_to_one_release_tag_and_prod_pulls_from_the_registry(target):
    tags = set()
    for w in workloads(render(target)):
        for c in containers(w):
            name, _, tag = c["image"].rpartition(":")
            assert name and "/" not in tag and tag not in ("", "latest"), f"{ident(w)}: {c['image']}"
            assert name.endswith(f"/{process(w)}"), f"{ident(w)} runs another process's image {c['image']}"
            tags.add(tag)
            if target == "prod":
                assert name.startswith("ghcr.io/emporium-shop/"), c["image"]
    assert len(tags) == 1, f"one release, one tag: {tags}"


# --- availability ------------------------------------------------------------------------


def matches(selector: Obj | None, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (an empty selector selects everything)."""
    if selector is None:
        return True
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        key, op, values = e["key"], e["operator"], set(e.get("values", []))
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def pod_labels(workload: Obj) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def test_every_deployment_has_a_pod_disruption_budget_that_selects_only_its_pods(target):
    objs = render(target)
    pdbs = of_kind(objs, "PodDisruptionBudget")
    for w in workloads(objs):
        selecting = [p["metadata"]["name"] for p in pdbs if matches(p["spec"]["selector"], pod_labels(w))]
        assert selecting == ([w["metadata"]["name"]] if w["kind"] == "Deployment" else []), ident(w)
    for p in pdbs:
        assert p["spec"].get("maxUnavailable") == 1, "maxUnavailable: 1 lets a single replica be drained"


def test_every_service_routes_to_its_deployment_and_never_to_a_migration_job(target):
    objs = render(target)
    for s in of_kind(objs, "Service"):
        backends = [
            ident(w)
            for w in workloads(objs)
            if matches({"matchLabels": s["spec"]["selector"]}, pod_labels(w))
        ]
        assert backends == [f"Deployment/{s['metadata']['name']}"]
        assert [p["name"] for p in s["spec"]["ports"]] == ["http"] and s["spec"]["ports"][0]["port"] == 8080


@pytest.mark.parametrize("target", ["base", "prod"])
def test_every_deployment_is_scaled_by_a_cpu_autoscaler_from_two_replicas(target):
    objs = render(target)
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(objs, "HorizontalPodAutoscaler")}
    assert set(hpas) == set(named(objs, "Deployment"))
    for name, h in hpas.items():
        assert h["apiVersion"] == "autoscaling/v2" and h["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert 2 <= h["spec"]["minReplicas"] < h["spec"]["maxReplicas"], name
        assert [m["resource"]["name"] for m in h["spec"]["metrics"]] == ["cpu"], name
        assert "replicas" not in named(objs, "Deployment")[name]["spec"], f"{name}: the HPA owns replicas"


def test_dev_runs_one_replica_of_each_process_without_autoscalers():
    objs = render("dev")
    assert not of_kind(objs, "HorizontalPodAutoscaler")
    assert {n: d["spec"].get("replicas") for n, d in named(objs, "Deployment").items()} == dict.fromkeys(
        PROCESSES, 1
    )


# --- secrets and config ------------------------------------------------------------------


def references(objs: tuple[Obj, ...]) -> Iterator[tuple[str, str, str | None, str]]:
    """(kind, name, key or None, who) for every Secret/ConfigMap a rendered object uses."""
    for w in workloads(objs):
        spec = pod_spec(w)
        for c in containers(w):
            for e in c.get("env", []):
                source = e.get("valueFrom", {})
                for ref, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                    if ref in source:
                        yield kind, source[ref]["name"], source[ref]["key"], ident(w)
            for e in c.get("envFrom", []):
                for ref, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                    if ref in e:
                        yield kind, e[ref]["name"], None, ident(w)
        for v in spec.get("volumes", []):
            if "secret" in v:
                yield "Secret", v["secret"]["secretName"], None, ident(w)
            if "configMap" in v:
                yield "ConfigMap", v["configMap"]["name"], None, ident(w)
    for i in of_kind(objs, "Ingress"):
        for tls in i["spec"].get("tls", []):
            yield "Secret", tls["secretName"], None, f"Ingress/{i['metadata']['name']}"


def operator_secrets(objs: tuple[Obj, ...]) -> set[str]:
    """Secrets an operator creates from an object in the render."""
    made = {f"{name}-app" for name in named(objs, "Cluster")}  # CloudNativePG's application user
    for i in of_kind(objs, "Ingress"):
        if "cert-manager.io/cluster-issuer" in i["metadata"].get("annotations", {}):
            made |= {tls["secretName"] for tls in i["spec"].get("tls", [])}
    return made


def test_no_secret_value_is_in_the_manifests(target):
    assert not of_kind(render(target), "Secret"), "Secrets are created outside git (SECRETS.md)"


def test_every_referenced_secret_and_config_map_is_rendered_made_by_an_operator_or_declared_external(target):
    objs = render(target)
    config_maps = set(named(objs, "ConfigMap"))
    secrets = operator_secrets(objs) | EXTERNAL_SECRETS[target]
    used = set()
    for kind, name, _key, who in references(objs):
        assert name in (config_maps if kind == "ConfigMap" else secrets), (
            f"{who} uses the unknown {kind} {name}"
        )
        if kind == "Secret":
            used.add(name)
    assert EXTERNAL_SECRETS[target] <= used, f"declared but unused: {EXTERNAL_SECRETS[target] - used}"
    if target == "prod":
        assert {f"{p}-db-app" for p in PROCESSES} <= operator_secrets(objs)


def test_secrets_md_names_every_secret_that_is_not_in_the_render_with_the_keys_read_from_it(target):
    doc = SECRETS_DOC.read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([\w.-]+)` \|([^|]*)\|", doc, re.M)}
    for kind, name, key, who in references(render(target)):
        if kind == "Secret":
            assert name in rows, f"SECRETS.md does not list the Secret {name} ({who})"
            assert key is None or f"`{key}`" in rows[name], f"SECRETS.md: {name} lacks the key {key} ({who})"


def env_names(objs: tuple[Obj, ...], container: Obj) -> set[str]:
    names = {e["name"] for e in container.get("env", [])}
    config_maps = named(objs, "ConfigMap")
    for e in container.get("envFrom", []):
        assert "configMapRef" in e, "settings come from ConfigMaps; secrets are read key by key"
        names |= set(config_maps[e["configMapRef"]["name"]].get("data", {}))
    return names


def test_every_deployment_sets_exactly_the_settings_its_process_reads_and_all_it_requires(target):
    objs = render(target)
    found = []
    for d in of_kind(objs, "Deployment"):
        for c in pod_spec(d)["containers"]:
            found += problems(process(d), env_names(objs, c) - EXPANSION_ONLY)
    assert not found, "\n".join(found)


def test_every_migration_job_sets_only_settings_its_process_reads(target):
    objs = render(target)
    found = []
    for j in of_kind(objs, "Job"):
        for c in containers(j):
            found += [
                p for p in problems(process(j), env_names(objs, c) - EXPANSION_ONLY) if "not a setting" in p
            ]
    assert not found, "\n".join(found)


def test_every_env_expansion_refers_to_an_earlier_entry_and_every_helper_is_expanded(target):
    """Kubernetes expands $(NAME) only from entries above it; an unknown one stays literal."""
    for w in workloads(render(target)):
        for c in containers(w):
            earlier: set[str] = set()
            expanded: set[str] = set()
            for e in c.get("env", []):
                refs = set(re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", e.get("value", "")))
                assert refs <= earlier, f"{ident(w)} {e['name']}: {refs - earlier} not defined above"
                expanded |= refs
                earlier.add(e["name"])
            helpers = earlier & EXPANSION_ONLY
            assert helpers <= expanded, f"{ident(w)} {c['name']}: {helpers - expanded} never used"


def test_every_database_url_is_a_psycopg_url_built_from_its_own_database_secret(target):
    for w in workloads(render(target)):
        for c in containers(w):
            env = {e["name"]: e for e in c.get("env", [])}
            url = env[f"{process(w).upper()}_DATABASE_URL"]
            assert url["value"].startswith("postgresql+psycopg://$(DB_USER):$(DB_PASSWORD)@"), ident(w)
            for helper in EXPANSION_ONLY:
                assert env[helper]["valueFrom"]["secretKeyRef"]["name"] == f"{process(w)}-db-app", ident(w)


# --- migrations --------------------------------------------------------------------------


def test_every_process_has_one_migration_job_and_the_gateway_seeds_its_admin_after_migrating(overlay):
    jobs = {process(j): j for j in of_kind(render(overlay), "Job")}
    assert set(jobs) == set(PROCESSES)
    for name, j in jobs.items():
        assert j["metadata"]["labels"]["app.kubernetes.io/component"] == "migration"
        spec = pod_spec(j)
        assert spec["restartPolicy"] == "Never"
        steps = [c["args"] for c in containers(j)]
        assert steps == ([["migrate"], ["seed-admin"]] if name == "gateway" else [["migrate"]]), name


def test_the_step_before_the_migrations_applies_what_the_jobs_need_and_no_workload(overlay):
    key, excluded = BEFORE_MIGRATIONS
    objs = render(overlay)
    first = {
        (o["kind"], o["metadata"]["name"])
        for o in objs
        if o["metadata"].get("labels", {}).get(key) not in excluded
    }
    assert not {kind for kind, _ in first} & {"Deployment", "Job"}
    for j in of_kind(objs, "Job"):
        assert ("ServiceAccount", pod_spec(j)["serviceAccountName"]) in first, ident(j)
        for kind, name, _key, who in references((j,)):
            if kind == "ConfigMap":
                assert (kind, name) in first, who
    assert {(o["kind"], o["metadata"]["name"]) for o in of_kind(objs, "NetworkPolicy")} <= first


# --- Kafka and PostgreSQL (prod) ---------------------------------------------------------


def test_prod_declares_every_topic_and_dead_letter_topic_the_code_uses_with_its_partitions():
    objs = render("prod")
    kafka = of_kind(objs, "Kafka")[0]["metadata"]["name"]
    declared = {t["spec"]["topicName"]: t for t in of_kind(objs, "KafkaTopic")}
    assert set(declared) == {name for t in topics.ALL for name in (t, topics.dlq(t))}
    for name, t in declared.items():
        assert t["metadata"]["labels"]["strimzi.io/cluster"] == kafka, name
        assert (t["spec"]["partitions"], t["spec"]["replicas"]) == (TOPIC_PARTITIONS, 3), name
        assert t["spec"]["config"]["min.insync.replicas"] == 2, name


def test_prod_kafka_is_three_kraft_nodes_with_three_replicas_and_two_in_sync():
    objs = render("prod")
    (kafka,) = of_kind(objs, "Kafka")
    annotations = kafka["metadata"]["annotations"]
    assert annotations["strimzi.io/kraft"] == "enabled" and annotations["strimzi.io/node-pools"] == "enabled"
    (pool,) = of_kind(objs, "KafkaNodePool")
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert pool["spec"]["replicas"] == 3 and set(pool["spec"]["roles"]) == {"broker", "controller"}
    config = kafka["spec"]["kafka"]["config"]
    assert (config["default.replication.factor"], config["min.insync.replicas"]) == (3, 2)
    assert config["offsets.topic.replication.factor"] == 3
    assert config["auto.create.topics.enable"] is False
    (plain,) = [lsn for lsn in kafka["spec"]["kafka"]["listeners"] if lsn["tls"] is False]
    bootstrap = f"{kafka['metadata']['name']}-kafka-bootstrap:{plain['port']}"
    for name, cm in named(objs, "ConfigMap").items():
        for key, value in cm["data"].items():
            if key.endswith("_KAFKA_BOOTSTRAP"):
                assert value == bootstrap, name


def test_prod_gives_each_process_its_own_three_instance_postgresql_cluster():
    clusters = named(render("prod"), "Cluster")
    assert set(clusters) == {f"{p}-db" for p in PROCESSES}
    for p in PROCESSES:
        spec = clusters[f"{p}-db"]["spec"]
        assert spec["instances"] == 3
        assert spec["bootstrap"]["initdb"] == {"database": p, "owner": p}


# --- network policies --------------------------------------------------------------------

Pod = tuple[str, dict[str, str]]  # (namespace, labels)


def peer_matches(peer: Obj, policy_namespace: str, pod: Pod) -> bool:
    if "ipBlock" in peer:
        return True  # conservative: an address range may include any pod
    namespace, labels = pod
    if "namespaceSelector" in peer:
        in_namespace = matches(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace})
    else:
        in_namespace = namespace == policy_namespace
    return in_namespace and matches(peer.get("podSelector"), labels)


def port_matches(rule: Obj, port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    return not ports or any(p["port"] == port and p.get("protocol", "TCP") == protocol for p in ports)


def side_allows(policies: list[Obj], direction: str, pod: Pod, peer: Pod, port: int, protocol: str) -> bool:
    """Whether the policies of `pod`'s namespace let `pod` send (Egress) or take (Ingress) it."""
    namespace, labels = pod
    field, peers = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == namespace
        and direction in p["spec"]["policyTypes"]
        and matches(p["spec"]["podSelector"], labels)
    ]
    if not selecting:
        return True
    return any(
        port_matches(rule, port, protocol)
        and (not rule.get(peers) or any(peer_matches(q, namespace, peer) for q in rule[peers]))
        for p in selecting
        for rule in p["spec"].get(field, [])
    )


def connects(policies: list[Obj], src: Pod, dst: Pod, port: int, protocol: str = "TCP") -> bool:
    return side_allows(policies, "Egress", src, dst, port, protocol) and side_allows(
        policies, "Ingress", dst, src, port, protocol
    )


@functools.cache
def network(overlay: str) -> tuple[list[Obj], dict[str, Pod], str]:
    objs = render(overlay)
    policies = of_kind(objs, "NetworkPolicy")
    namespace = of_kind(objs, "Deployment")[0]["metadata"]["namespace"]
    pods = {ident(w): (namespace, pod_labels(w)) for w in workloads(objs)}
    return policies, pods, namespace


def test_prod_denies_all_traffic_in_the_namespace_by_default():
    policies, _, _ = network("prod")
    deny = [
        p for p in policies if p["spec"]["podSelector"] == {} and not {"ingress", "egress"} & set(p["spec"])
    ]
    assert deny and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}


def test_the_gateway_is_the_only_workload_reachable_from_the_ingress_controller():
    policies, pods, _ = network("prod")
    controller: Pod = (INGRESS_NAMESPACE, {"app.kubernetes.io/name": "ingress-nginx"})
    reachable = {
        who for who, pod in pods.items() if side_allows(policies, "Ingress", pod, controller, 8080, "TCP")
    }
    assert reachable == {"Deployment/gateway"}


def test_each_deployment_reaches_only_the_processes_it_calls():
    policies, pods, _ = network("prod")
    deployments = {who.split("/")[1]: pod for who, pod in pods.items() if who.startswith("Deployment/")}
    calls = {
        (a, b)
        for a in deployments
        for b in deployments
        if a != b and connects(policies, deployments[a], deployments[b], 8080)
    }
    assert calls == CALLS


def test_each_workload_reaches_its_own_database_only_and_the_services_reach_kafka():
    policies, pods, namespace = network("prod")
    broker: Pod = (namespace, {"strimzi.io/cluster": "emporium", "strimzi.io/kind": "Kafka"})
    dns: Pod = ("kube-system", {"k8s-app": "kube-dns"})
    for who, pod in pods.items():
        name = pod[1]["app.kubernetes.io/name"]
        databases = {
            p for p in PROCESSES if connects(policies, pod, (namespace, {"cnpg.io/cluster": f"{p}-db"}), 5432)
        }
        assert databases == {name}, who
        # The brokers' ingress is Strimzi's own NetworkPolicy (from networkPolicyPeers): egress only.
        assert side_allows(policies, "Egress", pod, broker, 9092, "TCP") == (name in SERVICES), who
        assert connects(policies, pod, dns, 53, "UDP"), who


def test_prometheus_may_scrape_every_deployment_and_the_kafka_listener_admits_only_emporium():
    policies, pods, _ = network("prod")
    prometheus: Pod = ("monitoring", {"app.kubernetes.io/name": "prometheus"})
    for who, pod in pods.items():
        if who.startswith("Deployment/"):
            assert side_allows(policies, "Ingress", pod, prometheus, 8080, "TCP"), who
    (kafka,) = of_kind(render("prod"), "Kafka")
    for listener in kafka["spec"]["kafka"]["listeners"]:
        assert listener["networkPolicyPeers"] == [
            {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "emporium"}}}
        ]
